/*
 * stitch.c
 *	  Stitching a batch of events into the stored identity graph.
 *
 * For each event, in event_id order: its identifiers are normalized and
 * checked against the blocklist (refused ones go to identifier_rejections),
 * the one of highest priority is its anchor, and every other one is linked
 * to the anchor's profile by the rules of src/core/idgraph.c.  The batch
 * runs on a small graph holding the batch's identifiers and, for those
 * already stored, their profiles with their counts per kind; then what
 * changed is handed to the identity store (identity_store.c), which writes
 * it with one statement per table.
 *
 * Labels: stored profiles keep their ids; a profile made in the batch gets
 * a provisional label NEW_LABEL + n, larger than every stored id, so that
 * "the older profile survives" holds, and real ids (in the same order) when
 * the batch is written.
 *
 * The phases are one function each, on one Batch: read the events'
 * identifiers (normalized once per raw form), look up the stored ones,
 * build the graph, replay the events (the union), then resolve labels to
 * ids and describe the outcome for the store (profiles, identifiers,
 * links, merges, conflicts, anchors, rejections).
 *
 * The ingest path (event_batch.c) keeps the events of a statement and calls
 * cdp_stitch_events when the statement ends, or every so many events
 * inside a long COPY.
 */
#include "identity.h"
#include "identity_store.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"

#define NEW_LABEL (INT64CONST(1) << 62)


/* One distinct identifier of the batch. */
typedef struct Ident
{
	int			rule;
	char	   *value;
	int64		id;				/* stored id, 0 if new */
	int64		profile;		/* stored profile, 0 if new */
	int64		first_anchor;	/* stored first_anchor_event_id, 0 if none */
	int64		new_first_anchor;	/* to write, 0 if unchanged */
	int64		first_event;
	TimestampTz first_seen;
	int32		node;
	int			next;			/* hash chain */
} Ident;

/* One distinct raw identifier of the batch and what it normalized to. */
typedef struct RawEntry
{
	int			rule;
	char	   *raw;
	int			len;
	int			ident;			/* index in idents, or -1 if left out */
	const char *why;			/* why it was left out */
	int			next;			/* hash chain */
} RawEntry;

/* What happened to one link, to write. */
typedef struct Outcome
{
	int64		event_id;
	int			anchor;
	int			other;
	int			position;
	CdpLink		link;
} Outcome;

/* The state of one batch, from its events to the changes it makes. */
typedef struct Batch
{
	/* the events, in event_id order */
	int			n;
	const int64 *event_ids;
	const TimestampTz *occurred;
	Jsonb	   *const *docs;
	int		  **ev_ids;			/* each event's identifiers, anchor first */
	int		   *ev_n;
	/* the batch's distinct identifiers */
	const CdpRule *rules;
	int			n_rules;
	Ident	   *idents;
	int			n_idents;
	int			max_idents;
	int		   *buckets;
	int			n_buckets;
	RawEntry   *raws;			/* raw forms seen, so each is normalized once */
	int			n_raws;
	int			max_raws;
	int		   *raw_buckets;
	/* the graph */
	CdpIdGraph *g;
	int64	   *stored;			/* stored profiles of the identifiers */
	int			n_stored;
	HTAB	   *profile_nodes;	/* stored profile -> its node */
	int64		next_new;		/* provisional labels handed out */
	int64		current_event;
	int64	   *new_profile_event;	/* first event of each new profile */
	int			max_new;
	Outcome    *out;			/* what happened to each link */
	int			n_out;
	int			max_out;
	/* the outcome */
	HTAB	   *absorbed;		/* label merged away -> label it went to */
	int64	   *profile_ids;	/* real ids of new profiles */
	CdpIdentityChanges changes;
	instr_time	times[5];		/* start, read, looked up, replayed, written */
} Batch;

/* --- hashing identifiers --------------------------------------------------- */

/* FNV-1a of a rule and a value. */
static uint32
ident_hash(int rule, const char *value)
{
	uint32		h = 2166136261u ^ (uint32) rule;

	for (; *value; value++)
		h = (h ^ (unsigned char) *value) * 16777619u;
	return h;
}

/* Index of an identifier in the batch, added if new. */
static int
intern(Batch *b, int rule, char *value, int64 event_id, TimestampTz occurred_at)
{
	uint32		h = ident_hash(rule, value);
	int			i;

	for (i = b->buckets[h & (b->n_buckets - 1)]; i >= 0; i = b->idents[i].next)
		if (b->idents[i].rule == rule && strcmp(b->idents[i].value, value) == 0)
			return i;
	if (b->n_idents == b->max_idents)
	{
		b->max_idents *= 2;
		b->idents = repalloc_huge(b->idents, sizeof(Ident) * b->max_idents);
	}
	i = b->n_idents++;
	memset(&b->idents[i], 0, sizeof(Ident));
	b->idents[i].rule = rule;
	b->idents[i].value = value;
	b->idents[i].first_event = event_id;
	b->idents[i].first_seen = occurred_at;
	b->idents[i].node = -1;
	b->idents[i].next = b->buckets[h & (b->n_buckets - 1)];
	b->buckets[h & (b->n_buckets - 1)] = i;
	return i;
}

/*
 * The identifier a raw value of a rule stands for: its index in idents, or
 * -1 with *why.  Each distinct raw form is normalized and checked against
 * the blocklist once per batch (a cookie repeats on every event of a visit).
 */
static int
resolve_raw(Batch *b, int rule, const char *raw, int len, int64 event_id,
			TimestampTz occurred_at, const char **why)
{
	uint32		h = 2166136261u ^ (uint32) rule;
	int			i;
	int			slot;
	RawEntry   *r;
	char	   *value;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char) raw[i]) * 16777619u;
	slot = h & (b->n_buckets - 1);
	for (i = b->raw_buckets[slot]; i >= 0; i = b->raws[i].next)
	{
		r = &b->raws[i];
		if (r->rule == rule && r->len == len && memcmp(r->raw, raw, len) == 0)
		{
			*why = r->why;
			return r->ident;
		}
	}
	if (b->n_raws == b->max_raws)
	{
		b->max_raws *= 2;
		b->raws = repalloc_huge(b->raws, sizeof(RawEntry) * b->max_raws);
	}
	r = &b->raws[b->n_raws];
	r->rule = rule;
	r->raw = pnstrdup(raw, len);
	r->len = len;
	r->why = NULL;
	value = cdp_identity_normalize(rule, raw, len, &r->why);
	r->ident = value ? intern(b, rule, value, event_id, occurred_at) : -1;
	r->next = b->raw_buckets[slot];
	b->raw_buckets[slot] = b->n_raws++;
	*why = r->why;
	return r->ident;
}

/* Provisional label of a new profile (callback of the graph). */
static int64_t
new_label(void *arg)
{
	Batch	   *b = (Batch *) arg;

	if (b->next_new == b->max_new)
	{
		b->max_new *= 2;
		b->new_profile_event = repalloc_huge(b->new_profile_event, sizeof(int64) * b->max_new);
	}
	b->new_profile_event[b->next_new] = b->current_event;
	return NEW_LABEL + b->next_new++;
}

/* Orders an event's identifiers: priority, then kind, then value. */
static int
compare_idents(const void *a, const void *b, void *arg)
{
	const Batch *batch = arg;
	const Ident *x = &batch->idents[*(const int *) a];
	const Ident *y = &batch->idents[*(const int *) b];
	int			px = batch->rules[x->rule].priority;
	int			py = batch->rules[y->rule].priority;

	if (px != py)
		return px < py ? -1 : 1;
	if (x->rule != y->rule)
		return x->rule < y->rule ? -1 : 1;
	return strcmp(x->value, y->value);
}

/* Orders int64 values (a qsort comparator). */
int
cdp_compare_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

/* A hash table of int64 keys to one int64 value, in the current context. */
static HTAB *
int64_map(const char *name, int keys)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64) * keys;
	ctl.entrysize = sizeof(int64) * 2;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Sets up an empty batch for n events. */
static void
batch_init(Batch *b, int n, const int64 *event_ids, const TimestampTz *occurred,
		   Jsonb *const *docs)
{
	memset(b, 0, sizeof(Batch));
	b->n = n;
	b->event_ids = event_ids;
	b->occurred = occurred;
	b->docs = docs;
	b->ev_ids = palloc0(sizeof(int *) * n);
	b->ev_n = palloc0(sizeof(int) * n);
	b->rules = cdp_identity_rules(&b->n_rules);
	b->max_idents = 1024;
	b->idents = palloc(sizeof(Ident) * b->max_idents);
	for (b->n_buckets = 1024; b->n_buckets < n * 4; b->n_buckets *= 2)
		;
	b->buckets = palloc(sizeof(int) * b->n_buckets);
	memset(b->buckets, -1, sizeof(int) * b->n_buckets);
	b->raw_buckets = palloc(sizeof(int) * b->n_buckets);
	memset(b->raw_buckets, -1, sizeof(int) * b->n_buckets);
	b->max_raws = 1024;
	b->raws = palloc(sizeof(RawEntry) * b->max_raws);
	b->max_new = 1024;
	b->new_profile_event = palloc(sizeof(int64) * b->max_new);
	b->max_out = 1024;
	b->out = palloc(sizeof(Outcome) * b->max_out);
}

/* Adds one identifier of event e to its list, or to the rejections. */
static void
read_identifier(Batch *b, int e, const JsonbValue *key, const JsonbValue *val)
{
	const char *why = NULL;
	int			r = cdp_identity_find_rule(key->val.string.val, key->val.string.len);
	int			i = -1;
	int			k;

	if (r < 0)
		why = "has a kind without a rule in cdp.identity_rules";
	else
		i = resolve_raw(b, r, val->val.string.val, val->val.string.len,
						b->event_ids[e], b->occurred[e], &why);
	if (i < 0)
	{
		CdpRejectionRow *rej = CDP_PUSH(b->changes.rejections);

		rej->event_id = b->event_ids[e];
		rej->kind = pnstrdup(key->val.string.val, key->val.string.len);
		rej->value = pnstrdup(val->val.string.val, val->val.string.len);
		rej->reason = why;
		return;
	}
	for (k = 0; k < b->ev_n[e] && b->ev_ids[e][k] != i; k++)
		;
	if (k == b->ev_n[e])
		b->ev_ids[e][b->ev_n[e]++] = i;
}

/*
 * Phase 1: each event's identifiers, normalized, checked against the
 * blocklist and sorted (the anchor first); the batch's distinct ones.
 */
static void
read_events(Batch *b)
{
	int			e;

	for (e = 0; e < b->n; e++)
	{
		JsonbIterator *it = JsonbIteratorInit(&b->docs[e]->root);
		JsonbValue	key;
		JsonbValue	val;
		JsonbIteratorToken tok;
		int			count = JB_ROOT_COUNT(b->docs[e]);

		CHECK_FOR_INTERRUPTS();
		b->ev_ids[e] = palloc(sizeof(int) * (count > 0 ? count : 1));
		while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			JsonbIteratorNext(&it, &val, true);
			if (val.type == jbvString)	/* always, in a stored event */
				read_identifier(b, e, &key, &val);
		}
		qsort_arg(b->ev_ids[e], b->ev_n[e], sizeof(int), compare_idents, b);
	}
}

/* Phase 2: the stored id, profile and first anchor of each identifier. */
static void
look_up_identifiers(Batch *b)
{
	char	  **kinds = palloc(sizeof(char *) * b->n_idents);
	char	  **values = palloc(sizeof(char *) * b->n_idents);
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[2];
	uint64		r;
	int			i;

	for (i = 0; i < b->n_idents; i++)
	{
		kinds[i] = b->rules[b->idents[i].rule].kind;
		values[i] = b->idents[i].value;
	}
	args[0] = cdp_text_array(kinds, b->n_idents);
	args[1] = cdp_text_array(values, b->n_idents);

	/*
	 * A probe of the unique index per identifier: LIMIT 1 keeps the planner
	 * from turning it into a join that scans the whole table.
	 */
	cdp_spi_run("SELECT u.ord::int, i.identifier_id, i.profile_id, i.first_anchor "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY AS u(kind, value, ord) "
				"CROSS JOIN LATERAL (SELECT identifier_id, profile_id, "
				"coalesce(first_anchor_event_id, 0) AS first_anchor "
				"FROM cdp.identifiers WHERE kind = u.kind AND value = u.value LIMIT 1) i",
				2, types, args, SPI_OK_SELECT);
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Ident	   *id = &b->idents[DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
																 SPI_tuptable->tupdesc, 1, &isnull)) - 1];

		id->id = cdp_spi_int64(r, 2);
		id->profile = cdp_spi_int64(r, 3);
		id->first_anchor = cdp_spi_int64(r, 4);
	}
}

/* The stored profiles of the batch's identifiers, each once, ascending. */
static void
collect_stored_profiles(Batch *b)
{
	int			i;
	int			u = 1;

	b->stored = palloc(sizeof(int64) * (b->n_idents > 0 ? b->n_idents : 1));
	b->n_stored = 0;
	for (i = 0; i < b->n_idents; i++)
		if (b->idents[i].profile != 0)
			b->stored[b->n_stored++] = b->idents[i].profile;
	if (b->n_stored <= 1)
		return;
	qsort(b->stored, b->n_stored, sizeof(int64), cdp_compare_int64);
	for (i = 1; i < b->n_stored; i++)
		if (b->stored[i] != b->stored[u - 1])
			b->stored[u++] = b->stored[i];
	b->n_stored = u;
}

/* Runs a query whose $1 is the batch's stored profiles; returns its rows. */
static uint64
select_on_stored(Batch *b, const char *sql)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1] = {cdp_int64_array(b->stored, b->n_stored, INT8OID)};

	return cdp_spi_run(sql, 1, types, args, SPI_OK_SELECT);
}

/* Adds a stored profile with its counts per kind to the graph. */
static void
add_profile(Batch *b, int64 profile, int *counts)
{
	int64	   *entry = hash_search(b->profile_nodes, &profile, HASH_ENTER, NULL);

	entry[1] = cdp_idgraph_add_profile(b->g, profile, counts);
	memset(counts, 0, sizeof(int) * b->n_rules);
}

/* The stored profiles with their counts per kind, as graph nodes. */
static void
load_profiles(Batch *b)
{
	int		   *counts = palloc0(sizeof(int) * (b->n_rules > 0 ? b->n_rules : 1));
	int64		current = 0;
	uint64		n;
	uint64		r;

	if (b->n_stored == 0)
		return;
	n = select_on_stored(b, "SELECT profile_id, kind, pg_catalog.count(*)::int FROM cdp.identifiers "
						 "WHERE profile_id = ANY ($1) GROUP BY 1, 2 ORDER BY 1");
	for (r = 0; r < n; r++)
	{
		int64		p = cdp_spi_int64(r, 1);
		char	   *kind = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		int			rule = cdp_identity_find_rule(kind, strlen(kind));
		bool		isnull;

		if (current != 0 && p != current)
			add_profile(b, current, counts);
		current = p;
		if (rule >= 0)
			counts[rule] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
	}
	if (current != 0)
		add_profile(b, current, counts);
}

/*
 * Profiles split by cdp.unmerge stay apart (read after the lookups, which
 * took the invalidations of an unmerge that committed while this batch
 * waited for the lock).
 */
static void
keep_unmerged_apart(Batch *b)
{
	uint64		n;
	uint64		r;

	if (b->n_stored <= 1 || !cdp_identity_has_unmerges())
		return;
	n = select_on_stored(b, "SELECT x.profile_id, y.profile_id FROM cdp.identity_overrides o "
						 "JOIN cdp.identifiers x ON x.identifier_id = o.identifier_a "
						 "JOIN cdp.identifiers y ON y.identifier_id = o.identifier_b "
						 "WHERE o.action = 'unmerge' AND o.lifted_at IS NULL "
						 "AND x.profile_id = ANY ($1) AND y.profile_id = ANY ($1)");
	for (r = 0; r < n; r++)
	{
		int64		pa = cdp_spi_int64(r, 1);
		int64		pb = cdp_spi_int64(r, 2);
		int64	   *ea = hash_search(b->profile_nodes, &pa, HASH_FIND, NULL);
		int64	   *eb = hash_search(b->profile_nodes, &pb, HASH_FIND, NULL);

		if (ea != NULL && eb != NULL)
			cdp_idgraph_keep_apart(b->g, (int32) ea[1], (int32) eb[1]);
	}
}

/*
 * Phase 3: the graph of the batch: stored profiles with their counts, the
 * pairs kept apart, then the identifiers, placed in their stored profiles.
 */
static void
build_graph(Batch *b)
{
	int			i;

	b->g = cdp_identity_graph(new_label, b);
	b->profile_nodes = int64_map("cdp stitch profiles", 1);
	collect_stored_profiles(b);
	load_profiles(b);
	keep_unmerged_apart(b);
	for (i = 0; i < b->n_idents; i++)
	{
		Ident	   *id = &b->idents[i];
		int64	   *entry;

		id->node = cdp_idgraph_add_node(b->g, id->rule);
		if (id->node < 0)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		if (id->profile == 0)
			continue;
		entry = hash_search(b->profile_nodes, &id->profile, HASH_FIND, NULL);
		if (entry == NULL)
			elog(ERROR, "profile " INT64_FORMAT " of a stored identifier has no identifiers",
				 id->profile);
		cdp_idgraph_place(b->g, id->node, (int32) entry[1]);
	}
}

/*
 * Phase 4, the union: each event in order gives its anchor a profile and
 * links its other identifiers to it; what happened to each link is kept.
 */
static void
replay_events(Batch *b)
{
	int			e;
	int			k;

	for (e = 0; e < b->n; e++)
	{
		Ident	   *anchor;

		if (b->ev_n[e] == 0)
			continue;
		b->current_event = b->event_ids[e];
		anchor = &b->idents[b->ev_ids[e][0]];
		if (anchor->first_anchor == 0 && anchor->new_first_anchor == 0)
			anchor->new_first_anchor = b->event_ids[e];
		cdp_idgraph_ensure_profile(b->g, anchor->node);
		for (k = 1; k < b->ev_n[e]; k++)
		{
			Outcome    *o;

			if (b->n_out == b->max_out)
			{
				b->max_out *= 2;
				b->out = repalloc_huge(b->out, sizeof(Outcome) * b->max_out);
			}
			o = &b->out[b->n_out++];
			o->event_id = b->event_ids[e];
			o->anchor = b->ev_ids[e][0];
			o->other = b->ev_ids[e][k];
			o->position = k;
			o->link = cdp_idgraph_link(b->g, anchor->node, b->idents[b->ev_ids[e][k]].node);
		}
	}
}

/* Final label of a label after the merges of the batch. */
static int64
final_label(const Batch *b, int64 label)
{
	for (;;)
	{
		int64	   *e = hash_search(b->absorbed, &label, HASH_FIND, NULL);

		if (e == NULL)
			return label;
		label = e[1];
	}
}

/* The profile id of a label: a stored id, or the real id of a new one. */
static int64
real_id(const Batch *b, int64 label)
{
	return label >= NEW_LABEL ? b->profile_ids[label - NEW_LABEL] : label;
}

/*
 * Phase 5, resolve: real ids for the new profiles (forwarding when merged
 * in the batch) and the stored profiles merged away.
 */
static void
resolve_profiles(Batch *b)
{
	HASH_SEQ_STATUS seq;
	int64	   *entry;
	int			i;

	b->profile_ids = cdp_store_profile_ids((int) b->next_new);
	b->absorbed = int64_map("cdp stitch merges", 1);
	for (i = 0; i < b->n_out; i++)
	{
		if (b->out[i].link.outcome != CDP_LINK_MERGED)
			continue;
		entry = hash_search(b->absorbed, &b->out[i].link.absorbed, HASH_ENTER, NULL);
		entry[1] = b->out[i].link.survivor;
	}
	for (i = 0; i < b->next_new; i++)
	{
		CdpNewProfile *p = CDP_PUSH(b->changes.profiles);
		int64		f = final_label(b, NEW_LABEL + i);

		p->profile_id = b->profile_ids[i];
		p->first_event_id = b->new_profile_event[i];
		p->merged_into = f == NEW_LABEL + i ? 0 : real_id(b, f);
	}
	hash_seq_init(&seq, b->absorbed);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		CdpForward *f;

		if (entry[0] >= NEW_LABEL)
			continue;
		f = CDP_PUSH(b->changes.forwards);
		f->from = entry[0];
		f->to = real_id(b, final_label(b, entry[0]));
	}
}

/* Phase 5, resolve: ids for new identifiers; first anchors of stored ones. */
static void
resolve_identifiers(Batch *b)
{
	int			n_new = 0;
	int64	   *ids;
	int			i;

	for (i = 0; i < b->n_idents; i++)
		if (b->idents[i].id == 0)
			n_new++;
	ids = cdp_store_identifier_ids(n_new);
	for (i = 0, n_new = 0; i < b->n_idents; i++)
	{
		Ident	   *id = &b->idents[i];

		if (id->profile == 0)
		{
			CdpNewIdentifier *r = CDP_PUSH(b->changes.identifiers);

			r->identifier_id = id->id = ids[n_new++];
			r->kind = b->rules[id->rule].kind;
			r->value = id->value;
			r->profile_id = real_id(b, cdp_idgraph_profile(b->g, id->node));
			r->first_seen = id->first_seen;
			r->first_event_id = id->first_event;
			r->first_anchor_event_id = id->new_first_anchor;
		}
		else if (id->new_first_anchor != 0)
		{
			CdpFirstAnchor *r = CDP_PUSH(b->changes.first_anchors);

			r->identifier_id = id->id;
			r->event_id = id->new_first_anchor;
		}
	}
}

/* A link the rules refused, as a conflict. */
static void
record_conflict(Batch *b, const Outcome *o, int64 anchor_id, int64 identifier_id)
{
	CdpConflictRow *c = CDP_PUSH(b->changes.conflicts);

	c->event_id = o->event_id;
	c->anchor_id = anchor_id;
	c->identifier_id = identifier_id;
	c->profile_id = real_id(b, o->link.survivor);
	c->other_profile = real_id(b, o->link.other);
	c->kind = o->link.outcome == CDP_LINK_LIMIT ? b->rules[o->link.kind].kind : NULL;
	c->reason = o->link.outcome == CDP_LINK_LIMIT ? "limit" :
		o->link.outcome == CDP_LINK_APART ? "kept_apart" : "no_merge";
}

/* The links (first event of each pair), with the merges and conflicts they made. */
static void
record_links(Batch *b)
{
	HTAB	   *pairs = int64_map("cdp stitch pairs", 2);
	int			i;

	for (i = 0; i < b->n_out; i++)
	{
		const Outcome *o = &b->out[i];
		int64		key[2] = {b->idents[o->anchor].id, b->idents[o->other].id};
		bool		found;
		CdpLinkRow *l;

		hash_search(pairs, key, HASH_ENTER, &found);
		if (found)
			continue;			/* only the first event of a pair counts */
		l = CDP_PUSH(b->changes.links);
		l->anchor_id = key[0];
		l->identifier_id = key[1];
		l->event_id = o->event_id;
		l->position = o->position;
		if (o->link.outcome == CDP_LINK_MERGED)
		{
			CdpMergeRow *m = CDP_PUSH(b->changes.merges);

			m->survivor = real_id(b, o->link.survivor);
			m->absorbed = real_id(b, o->link.absorbed);
			m->anchor_id = key[0];
			m->identifier_id = key[1];
			m->event_id = o->event_id;
		}
		else if (o->link.outcome == CDP_LINK_LIMIT || o->link.outcome == CDP_LINK_NO_MERGE ||
				 o->link.outcome == CDP_LINK_APART)
			record_conflict(b, o, key[0], key[1]);
	}
}

/* Each event's anchor (events without a valid identifier have none). */
static void
record_anchors(Batch *b)
{
	int			e;

	for (e = 0; e < b->n; e++)
	{
		CdpEventAnchor *a;

		if (b->ev_n[e] == 0)
			continue;
		a = CDP_PUSH(b->changes.anchors);
		a->event_id = b->event_ids[e];
		a->occurred_at = b->occurred[e];
		a->anchor_id = b->idents[b->ev_ids[e][0]].id;
	}
}

/* Logs the time of each phase at DEBUG1. */
static void
log_times(Batch *b)
{
	double		ms[4];
	int			i;

	INSTR_TIME_SET_CURRENT(b->times[4]);
	for (i = 0; i < 4; i++)
	{
		instr_time	d = b->times[i + 1];

		INSTR_TIME_SUBTRACT(d, b->times[i]);
		ms[i] = INSTR_TIME_GET_MILLISEC(d);
	}
	elog(DEBUG1, "cdp stitch: %d events, %d identifiers: parse %.1f ms, look up %.1f ms, graph %.1f ms, write %.1f ms",
		 b->n, b->n_idents, ms[0], ms[1], ms[2], ms[3]);
}

/* Stitches events given in event_id order. */
void
cdp_stitch_events(int n, const int64 *event_ids, const TimestampTz *occurred,
				  Jsonb *const *identifiers)
{
	MemoryContext cxt;
	MemoryContext old;
	Batch		b;

	if (n == 0)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp stitch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	batch_init(&b, n, event_ids, occurred, identifiers);
	cdp_spi_connect();
	cdp_store_lock();
	INSTR_TIME_SET_CURRENT(b.times[0]);
	read_events(&b);
	INSTR_TIME_SET_CURRENT(b.times[1]);
	b.times[2] = b.times[3] = b.times[1];
	if (b.n_idents > 0)
	{
		look_up_identifiers(&b);
		INSTR_TIME_SET_CURRENT(b.times[2]);
		build_graph(&b);
		replay_events(&b);
		INSTR_TIME_SET_CURRENT(b.times[3]);
		resolve_profiles(&b);
		resolve_identifiers(&b);
		record_links(&b);
		record_anchors(&b);
	}
	cdp_store_write(&b.changes);
	cdp_spi_finish();
	cdp_worker_wake_at_commit();
	log_times(&b);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}
