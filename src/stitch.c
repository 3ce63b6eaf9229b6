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
 * changed is written with one statement per table.
 *
 * Labels: stored profiles keep their ids; a profile made in the batch gets
 * a provisional label NEW_LABEL + n, larger than every stored id, so that
 * "the older profile survives" holds, and real ids (in the same order) when
 * the batch is written.
 *
 * The ingest path remembers the events of a statement (events.c calls
 * cdp_stitch_remember from the row check) and stitches them when the
 * statement ends, or every STITCH_BATCH events inside a long COPY.
 */
#include "identity.h"
#include "idgraph.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"

#define NEW_LABEL (INT64CONST(1) << 62)
#define STITCH_BATCH 50000


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

/* The state of one batch. */
typedef struct Batch
{
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
	int64		next_new;		/* provisional labels handed out */
	int64		current_event;
	int64	   *new_profile_event;	/* first event of each new profile */
	int			max_new;
} Batch;

/* Events remembered by the ingest path. */
typedef struct Remembered
{
	int64		event_id;
	TimestampTz occurred_at;
	Jsonb	   *identifiers;
	int			nest_level;		/* subtransaction that stored the event */
} Remembered;

static MemoryContext remembered_cxt = NULL;
static Remembered *remembered = NULL;
static int	n_remembered = 0;
static int	max_remembered = 0;
static bool callbacks_registered = false;

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

/* --- SQL helpers ------------------------------------------------------------ */

/* Runs a statement with array arguments; returns the number of rows. */
static uint64
run(const char *sql, int nargs, const Oid *types, Datum *values, int expect)
{
	return cdp_spi_run(sql, nargs, types, values, expect);
}

/* n ids from a sequence, ascending. */
static int64 *
next_ids(const char *seq, int n)
{
	int64	   *ids = palloc(sizeof(int64) * (n > 0 ? n : 1));
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(n)};
	char	   *sql = psprintf("SELECT nextval('%s') FROM generate_series(1, $1)", seq);
	uint64		i;

	if (n == 0)
		return ids;
	run(sql, 1, types, args, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return ids;
}

/* --- the batch ------------------------------------------------------------- */

/* Orders an event's identifiers: priority, then kind, then value. */
static const Batch *sort_batch;
static int
compare_idents(const void *a, const void *b)
{
	const Ident *x = &sort_batch->idents[*(const int *) a];
	const Ident *y = &sort_batch->idents[*(const int *) b];
	int			px = sort_batch->rules[x->rule].priority;
	int			py = sort_batch->rules[y->rule].priority;

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

/* Final label of a label after the merges of the batch. */
static int64
final_label(HTAB *absorbed, int64 label)
{
	for (;;)
	{
		int64	   *e = hash_search(absorbed, &label, HASH_FIND, NULL);

		if (e == NULL)
			return label;
		label = e[1];
	}
}

/* Stitches events given in event_id order. */
static void
stitch_events(int n, const int64 *event_ids, const TimestampTz *occurred,
				  Jsonb *const *identifiers)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp stitch", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Batch		b;
	int		  **ev_ids = palloc0(sizeof(int *) * (n > 0 ? n : 1));
	int		   *ev_n = palloc0(sizeof(int) * (n > 0 ? n : 1));
	int			e;
	int			i;
	int			k;

	/* refused identifiers */
	int64	   *rej_event = NULL;
	char	  **rej_kind = NULL;
	char	  **rej_value = NULL;
	char	  **rej_reason = NULL;
	int			n_rej = 0;
	int			max_rej = 0;

	Outcome    *out;
	int			n_out = 0;
	int			max_out = 1024;
	CdpIdGraph *g;
	int		   *limits;
	unsigned char *merges;
	HTAB	   *absorbed;
	HASHCTL		ctl;
	instr_time	t_start;
	instr_time	t_parsed;
	instr_time	t_looked_up;
	instr_time	t_replayed;
	instr_time	t_written;

	if (n == 0)
		goto done;

	INSTR_TIME_SET_ZERO(t_parsed);
	INSTR_TIME_SET_ZERO(t_looked_up);
	INSTR_TIME_SET_ZERO(t_replayed);
	memset(&b, 0, sizeof(b));
	b.rules = cdp_identity_rules(&b.n_rules);
	b.max_idents = 1024;
	b.idents = palloc(sizeof(Ident) * b.max_idents);
	for (b.n_buckets = 1024; b.n_buckets < n * 4; b.n_buckets *= 2)
		;
	b.buckets = palloc(sizeof(int) * b.n_buckets);
	memset(b.buckets, -1, sizeof(int) * b.n_buckets);
	b.raw_buckets = palloc(sizeof(int) * b.n_buckets);
	memset(b.raw_buckets, -1, sizeof(int) * b.n_buckets);
	b.max_raws = 1024;
	b.raws = palloc(sizeof(RawEntry) * b.max_raws);
	b.max_new = 1024;
	b.new_profile_event = palloc(sizeof(int64) * b.max_new);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(STITCH_LOCK_KEY1),
						Int32GetDatum(STITCH_LOCK_KEY2));

	INSTR_TIME_SET_CURRENT(t_start);

	/* 1. normalize; the batch's distinct identifiers and each event's list */
	for (e = 0; e < n; e++)
	{
		JsonbIterator *it = JsonbIteratorInit(&identifiers[e]->root);
		JsonbValue	key;
		JsonbValue	val;
		JsonbIteratorToken tok;
		int			count = JB_ROOT_COUNT(identifiers[e]);

		CHECK_FOR_INTERRUPTS();
		ev_ids[e] = palloc(sizeof(int) * (count > 0 ? count : 1));
		while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
		{
			int			r;
			const char *why = NULL;

			if (tok != WJB_KEY)
				continue;
			JsonbIteratorNext(&it, &val, true);
			if (val.type != jbvString)
				continue;		/* cannot happen in a stored event */
			r = cdp_identity_find_rule(key.val.string.val, key.val.string.len);
			i = -1;
			if (r < 0)
				why = "has a kind without a rule in cdp.identity_rules";
			else
				i = resolve_raw(&b, r, val.val.string.val, val.val.string.len,
								event_ids[e], occurred[e], &why);
			if (i < 0)
			{
				if (n_rej == max_rej)
				{
					max_rej = max_rej ? max_rej * 2 : 64;
					rej_event = rej_event ? repalloc(rej_event, sizeof(int64) * max_rej) : palloc(sizeof(int64) * max_rej);
					rej_kind = rej_kind ? repalloc(rej_kind, sizeof(char *) * max_rej) : palloc(sizeof(char *) * max_rej);
					rej_value = rej_value ? repalloc(rej_value, sizeof(char *) * max_rej) : palloc(sizeof(char *) * max_rej);
					rej_reason = rej_reason ? repalloc(rej_reason, sizeof(char *) * max_rej) : palloc(sizeof(char *) * max_rej);
				}
				rej_event[n_rej] = event_ids[e];
				rej_kind[n_rej] = pnstrdup(key.val.string.val, key.val.string.len);
				rej_value[n_rej] = pnstrdup(val.val.string.val, val.val.string.len);
				rej_reason[n_rej] = pstrdup(why);
				n_rej++;
				continue;
			}
			for (k = 0; k < ev_n[e] && ev_ids[e][k] != i; k++)
				;
			if (k == ev_n[e])
				ev_ids[e][ev_n[e]++] = i;
		}
		sort_batch = &b;
		qsort(ev_ids[e], ev_n[e], sizeof(int), compare_idents);
	}

	INSTR_TIME_SET_CURRENT(t_parsed);

	/* with no valid identifier (or no rule at all) only rejections remain */
	if (b.n_idents == 0)
		goto rejections;

	/* 2. what is stored of them */
	{
		char	  **kinds = palloc(sizeof(char *) * b.n_idents);
		char	  **values = palloc(sizeof(char *) * b.n_idents);
		Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
		Datum		args[2];
		uint64		r;

		for (i = 0; i < b.n_idents; i++)
		{
			kinds[i] = b.rules[b.idents[i].rule].kind;
			values[i] = b.idents[i].value;
		}
		args[0] = cdp_text_array(kinds, b.n_idents);
		args[1] = cdp_text_array(values, b.n_idents);
		/*
		 * A probe of the unique index per identifier: LIMIT 1 keeps the
		 * planner from turning it into a join that scans the whole table.
		 */
		run("SELECT u.ord::int, i.identifier_id, i.profile_id, i.first_anchor "
			"FROM unnest($1, $2) WITH ORDINALITY AS u(kind, value, ord) "
			"CROSS JOIN LATERAL (SELECT identifier_id, profile_id, coalesce(first_anchor_event_id, 0) AS first_anchor "
			"FROM cdp.identifiers WHERE kind = u.kind AND value = u.value LIMIT 1) i",
			2, types, args, SPI_OK_SELECT);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	t = SPI_tuptable->vals[r];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			Ident	   *id = &b.idents[DatumGetInt32(SPI_getbinval(t, d, 1, &isnull)) - 1];

			id->id = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
			id->profile = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
			id->first_anchor = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
		}
	}

	INSTR_TIME_SET_CURRENT(t_looked_up);

	/* 3. the graph: stored profiles with their counts, then the identifiers */
	limits = palloc(sizeof(int) * b.n_rules);
	merges = palloc(b.n_rules);
	for (k = 0; k < b.n_rules; k++)
	{
		limits[k] = b.rules[k].limit;
		merges[k] = b.rules[k].merges;
	}
	g = cdp_idgraph_create(b.n_rules, limits, merges, new_label, &b);
	if (g == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_TRY();
	{
		int64	   *stored = palloc(sizeof(int64) * (b.n_idents > 0 ? b.n_idents : 1));
		int			n_stored = 0;
		HTAB	   *profile_nodes;

		for (i = 0; i < b.n_idents; i++)
			if (b.idents[i].profile != 0)
				stored[n_stored++] = b.idents[i].profile;
		/* each profile once */
		if (n_stored > 1)
		{
			int			u = 1;

			qsort(stored, n_stored, sizeof(int64), cdp_compare_int64);
			for (i = 1; i < n_stored; i++)
				if (stored[i] != stored[u - 1])
					stored[u++] = stored[i];
			n_stored = u;
		}
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64) * 2;
		ctl.hcxt = cxt;
		profile_nodes = hash_create("cdp stitch profiles", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		if (n_stored > 0)
		{
			Oid			types[1] = {INT8ARRAYOID};
			Datum		args[1] = {cdp_int64_array(stored, n_stored, INT8OID)};
			uint64		r;
			int		   *counts = palloc0(sizeof(int) * b.n_rules);
			int64		current = 0;

			run("SELECT profile_id, kind, count(*)::int FROM cdp.identifiers "
				"WHERE profile_id = ANY ($1) GROUP BY 1, 2 ORDER BY 1",
				1, types, args, SPI_OK_SELECT);
			for (r = 0; r <= SPI_processed; r++)
			{
				bool		isnull;
				int64		p = 0;

				if (r < SPI_processed)
					p = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
				if (current != 0 && p != current)
				{
					int64	   *entry = hash_search(profile_nodes, &current, HASH_ENTER, NULL);

					entry[1] = cdp_idgraph_add_profile(g, current, counts);
					memset(counts, 0, sizeof(int) * b.n_rules);
				}
				if (r == SPI_processed)
					break;
				current = p;
				{
					char	   *kind = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
					int			rr = cdp_identity_find_rule(kind, strlen(kind));

					if (rr >= 0)
						counts[rr] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
				}
			}
		}
		/*
		 * profiles split by cdp.unmerge stay apart (read after the lookups
		 * above, which took the invalidations of an unmerge that committed
		 * while this batch waited for the lock)
		 */
		if (n_stored > 1 && cdp_identity_has_unmerges())
		{
			Oid			types[1] = {INT8ARRAYOID};
			Datum		args[1] = {cdp_int64_array(stored, n_stored, INT8OID)};
			uint64		r;

			run("SELECT x.profile_id, y.profile_id FROM cdp.identity_overrides o "
				"JOIN cdp.identifiers x ON x.identifier_id = o.identifier_a "
				"JOIN cdp.identifiers y ON y.identifier_id = o.identifier_b "
				"WHERE o.action = 'unmerge' AND o.lifted_at IS NULL "
				"AND x.profile_id = ANY ($1) AND y.profile_id = ANY ($1)",
				1, types, args, SPI_OK_SELECT);
			for (r = 0; r < SPI_processed; r++)
			{
				bool		isnull;
				int64		pa = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
				int64		pb = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
				int64	   *ea = hash_search(profile_nodes, &pa, HASH_FIND, NULL);
				int64	   *eb = hash_search(profile_nodes, &pb, HASH_FIND, NULL);

				if (ea != NULL && eb != NULL)
					cdp_idgraph_keep_apart(g, (int32) ea[1], (int32) eb[1]);
			}
		}
		for (i = 0; i < b.n_idents; i++)
		{
			b.idents[i].node = cdp_idgraph_add_node(g, b.idents[i].rule);
			if (b.idents[i].node < 0)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			if (b.idents[i].profile != 0)
			{
				int64	   *entry = hash_search(profile_nodes, &b.idents[i].profile, HASH_FIND, NULL);

				if (entry == NULL)
					elog(ERROR, "profile " INT64_FORMAT " of a stored identifier has no identifiers",
						 b.idents[i].profile);
				cdp_idgraph_place(g, b.idents[i].node, (int32) entry[1]);
			}
		}

		/* 4. replay the events */
		out = palloc(sizeof(Outcome) * max_out);
		for (e = 0; e < n; e++)
		{
			Ident	   *anchor;

			if (ev_n[e] == 0)
				continue;
			b.current_event = event_ids[e];
			anchor = &b.idents[ev_ids[e][0]];
			if (anchor->first_anchor == 0 && anchor->new_first_anchor == 0)
				anchor->new_first_anchor = event_ids[e];
			cdp_idgraph_ensure_profile(g, anchor->node);
			for (k = 1; k < ev_n[e]; k++)
			{
				Outcome    *o;

				if (n_out == max_out)
				{
					max_out *= 2;
					out = repalloc_huge(out, sizeof(Outcome) * max_out);
				}
				o = &out[n_out++];
				o->event_id = event_ids[e];
				o->anchor = ev_ids[e][0];
				o->other = ev_ids[e][k];
				o->position = k;
				o->link = cdp_idgraph_link(g, anchor->node, b.idents[ev_ids[e][k]].node);
			}
		}
	}
	PG_CATCH();
	{
		cdp_idgraph_free(g);
		PG_RE_THROW();
	}
	PG_END_TRY();

	INSTR_TIME_SET_CURRENT(t_replayed);

	/* 5. real ids for new profiles and identifiers, final labels */
	{
		int64	   *profile_ids = next_ids("cdp.profiles_profile_id_seq", (int) b.next_new);
		int			n_new_idents = 0;
		int64	   *ident_ids;
		int64	   *ident_profile = palloc(sizeof(int64) * (b.n_idents > 0 ? b.n_idents : 1));

#define REAL(label) ((label) >= NEW_LABEL ? profile_ids[(label) - NEW_LABEL] : (label))

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64) * 2;
		ctl.hcxt = cxt;
		absorbed = hash_create("cdp stitch merges", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (i = 0; i < n_out; i++)
		{
			if (out[i].link.outcome == CDP_LINK_MERGED)
			{
				int64	   *entry = hash_search(absorbed, &out[i].link.absorbed, HASH_ENTER, NULL);

				entry[1] = out[i].link.survivor;
			}
		}
		for (i = 0; i < b.n_idents; i++)
		{
			ident_profile[i] = REAL(cdp_idgraph_profile(g, b.idents[i].node));
			if (b.idents[i].id == 0)
				n_new_idents++;
		}
		cdp_idgraph_free(g);
		ident_ids = next_ids("cdp.identifiers_identifier_id_seq", n_new_idents);
		for (i = 0, k = 0; i < b.n_idents; i++)
			if (b.idents[i].id == 0)
				b.idents[i].id = ident_ids[k++];

		/* new profiles, with a forwarding pointer if merged in the batch */
		if (b.next_new > 0)
		{
			int64	   *merged = palloc(sizeof(int64) * b.next_new);
			bool	   *mnull = palloc(sizeof(bool) * b.next_new);
			Datum	   *md = palloc(sizeof(Datum) * b.next_new);
			int			dims[1] = {(int) b.next_new};
			int			lbs[1] = {1};
			Oid			types[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
			Datum		args[3];

			for (k = 0; k < b.next_new; k++)
			{
				int64		f = final_label(absorbed, NEW_LABEL + k);

				merged[k] = REAL(f);
				mnull[k] = f == NEW_LABEL + k;
				md[k] = Int64GetDatum(merged[k]);
			}
			args[0] = cdp_int64_array(profile_ids, (int) b.next_new, INT8OID);
			args[1] = cdp_int64_array(b.new_profile_event, (int) b.next_new, INT8OID);
			args[2] = PointerGetDatum(construct_md_array(md, mnull, 1, dims, lbs, INT8OID, 8,
														 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			run("INSERT INTO cdp.profiles (profile_id, first_event_id, merged_into, merged_at) "
				"SELECT p, e, m, CASE WHEN m IS NOT NULL THEN now() END FROM unnest($1, $2, $3) AS u(p, e, m)",
				3, types, args, SPI_OK_INSERT);
		}

		/* stored profiles merged away: pointers and identifiers */
		{
			int64	   *from = palloc(sizeof(int64) * (n_out + 1));
			int64	   *to = palloc(sizeof(int64) * (n_out + 1));
			int			n_moved = 0;
			HASH_SEQ_STATUS seq;
			int64	   *entry;

			hash_seq_init(&seq, absorbed);
			while ((entry = hash_seq_search(&seq)) != NULL)
			{
				if (entry[0] >= NEW_LABEL)
					continue;
				from[n_moved] = entry[0];
				to[n_moved] = REAL(final_label(absorbed, entry[0]));
				n_moved++;
			}
			if (n_moved > 0)
			{
				Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
				Datum		args[2] = {cdp_int64_array(from, n_moved, INT8OID), cdp_int64_array(to, n_moved, INT8OID)};

				/* "= ANY ($1)" finds the rows through the index first */
				run("UPDATE cdp.profiles p SET merged_into = m.t, merged_at = now() "
					"FROM unnest($1, $2) AS m(f, t) WHERE p.profile_id = ANY ($1) AND p.profile_id = m.f",
					2, types, args, SPI_OK_UPDATE);
				/* profiles that forwarded to them forward to the survivor */
				run("UPDATE cdp.profiles p SET merged_into = m.t "
					"FROM unnest($1, $2) AS m(f, t) WHERE p.merged_into = ANY ($1) AND p.merged_into = m.f",
					2, types, args, SPI_OK_UPDATE);
				run("UPDATE cdp.identifiers i SET profile_id = m.t "
					"FROM unnest($1, $2) AS m(f, t) WHERE i.profile_id = ANY ($1) AND i.profile_id = m.f",
					2, types, args, SPI_OK_UPDATE);
			}
		}

		/* new identifiers, and first anchors of stored ones */
		if (n_new_idents > 0 || b.n_idents > 0)
		{
			int64	   *ids = palloc(sizeof(int64) * b.n_idents);
			char	  **kinds = palloc(sizeof(char *) * b.n_idents);
			char	  **values = palloc(sizeof(char *) * b.n_idents);
			int64	   *profs = palloc(sizeof(int64) * b.n_idents);
			TimestampTz *seen = palloc(sizeof(TimestampTz) * b.n_idents);
			int64	   *firsts = palloc(sizeof(int64) * b.n_idents);
			int64	   *anchors = palloc(sizeof(int64) * b.n_idents);
			int64	   *upd_ids = palloc(sizeof(int64) * b.n_idents);
			int64	   *upd_anchor = palloc(sizeof(int64) * b.n_idents);
			int			m = 0;
			int			u = 0;

			for (i = 0; i < b.n_idents; i++)
			{
				Ident	   *id = &b.idents[i];

				if (id->profile == 0)
				{
					ids[m] = id->id;
					kinds[m] = b.rules[id->rule].kind;
					values[m] = id->value;
					profs[m] = ident_profile[i];
					seen[m] = id->first_seen;
					firsts[m] = id->first_event;
					anchors[m] = id->new_first_anchor;
					m++;
				}
				else if (id->new_first_anchor != 0)
				{
					upd_ids[u] = id->id;
					upd_anchor[u] = id->new_first_anchor;
					u++;
				}
			}
			if (m > 0)
			{
				Oid			types[7] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
				TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
				Datum		args[7];

				args[0] = cdp_int64_array(ids, m, INT8OID);
				args[1] = cdp_text_array(kinds, m);
				args[2] = cdp_text_array(values, m);
				args[3] = cdp_int64_array(profs, m, INT8OID);
				args[4] = cdp_int64_array(seen, m, TIMESTAMPTZOID);
				args[5] = cdp_int64_array(firsts, m, INT8OID);
				args[6] = cdp_int64_array(anchors, m, INT8OID);
				run("INSERT INTO cdp.identifiers (identifier_id, kind, value, profile_id, first_seen, "
					"first_event_id, first_anchor_event_id, initial_profile_id) "
					"SELECT i, k, v, p, s, f, nullif(a, 0), p FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(i, k, v, p, s, f, a)",
					7, types, args, SPI_OK_INSERT);
			}
			if (u > 0)
			{
				Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
				Datum		args[2] = {cdp_int64_array(upd_ids, u, INT8OID), cdp_int64_array(upd_anchor, u, INT8OID)};

				run("UPDATE cdp.identifiers i SET first_anchor_event_id = m.a "
					"FROM unnest($1, $2) AS m(i, a) WHERE i.identifier_id = ANY ($1) AND i.identifier_id = m.i "
					"AND i.first_anchor_event_id IS NULL",
					2, types, args, SPI_OK_UPDATE);
			}
		}

		/* links (first event of each pair), merges, conflicts */
		if (n_out > 0)
		{
			int64	   *la = palloc(sizeof(int64) * n_out);
			int64	   *lb = palloc(sizeof(int64) * n_out);
			int64	   *le = palloc(sizeof(int64) * n_out);
			int64	   *lp = palloc(sizeof(int64) * n_out);
			int64	   *ms = palloc(sizeof(int64) * n_out);
			int64	   *mab = palloc(sizeof(int64) * n_out);
			int64	   *ma = palloc(sizeof(int64) * n_out);
			int64	   *mi = palloc(sizeof(int64) * n_out);
			int64	   *me = palloc(sizeof(int64) * n_out);
			int64	   *ce = palloc(sizeof(int64) * n_out);
			int64	   *ca = palloc(sizeof(int64) * n_out);
			int64	   *ci = palloc(sizeof(int64) * n_out);
			int64	   *cp = palloc(sizeof(int64) * n_out);
			int64	   *co = palloc(sizeof(int64) * n_out);
			char	  **ck = palloc(sizeof(char *) * n_out);
			char	  **cr = palloc(sizeof(char *) * n_out);
			int			nl = 0;
			int			nm = 0;
			int			nc = 0;
			HTAB	   *pairs;

			ctl.keysize = sizeof(int64) * 2;
			ctl.entrysize = sizeof(int64) * 2;
			ctl.hcxt = cxt;
			pairs = hash_create("cdp stitch pairs", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			for (i = 0; i < n_out; i++)
			{
				Outcome    *o = &out[i];
				int64		key[2] = {b.idents[o->anchor].id, b.idents[o->other].id};
				bool		found;

				hash_search(pairs, key, HASH_ENTER, &found);
				if (found)
					continue;	/* only the first event of a pair counts */
				la[nl] = key[0];
				lb[nl] = key[1];
				le[nl] = o->event_id;
				lp[nl] = o->position;
				nl++;
				switch (o->link.outcome)
				{
					case CDP_LINK_MERGED:
						ms[nm] = REAL(o->link.survivor);
						mab[nm] = REAL(o->link.absorbed);
						ma[nm] = key[0];
						mi[nm] = key[1];
						me[nm] = o->event_id;
						nm++;
						break;
					case CDP_LINK_LIMIT:
					case CDP_LINK_NO_MERGE:
					case CDP_LINK_APART:
						ce[nc] = o->event_id;
						ca[nc] = key[0];
						ci[nc] = key[1];
						cp[nc] = REAL(o->link.survivor);
						co[nc] = REAL(o->link.other);
						ck[nc] = o->link.outcome == CDP_LINK_LIMIT ? b.rules[o->link.kind].kind : NULL;
						cr[nc] = o->link.outcome == CDP_LINK_LIMIT ? "limit" :
							o->link.outcome == CDP_LINK_APART ? "kept_apart" : "no_merge";
						nc++;
						break;
					default:
						break;
				}
			}
			if (nc > 0)
			{
				Oid			types[7] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
				INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
				Datum		args[7];

				args[0] = cdp_int64_array(ce, nc, INT8OID);
				args[1] = cdp_int64_array(ca, nc, INT8OID);
				args[2] = cdp_int64_array(ci, nc, INT8OID);
				args[3] = cdp_int64_array(cp, nc, INT8OID);
				args[4] = cdp_int64_array(co, nc, INT8OID);
				args[5] = cdp_text_array(ck, nc);
				args[6] = cdp_text_array(cr, nc);
				/* a pair refused before is not a new conflict */
				run("INSERT INTO cdp.identity_conflicts (event_id, anchor_id, identifier_id, profile_id, "
					"other_profile, kind, reason) "
					"SELECT u.* FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(e, a, i, p, o, k, r) "
					"WHERE NOT EXISTS (SELECT FROM cdp.identity_links l WHERE l.anchor_id = u.a AND l.identifier_id = u.i)",
					7, types, args, SPI_OK_INSERT);
			}
			if (nm > 0)
			{
				Oid			types[5] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
				Datum		args[5];

				args[0] = cdp_int64_array(ms, nm, INT8OID);
				args[1] = cdp_int64_array(mab, nm, INT8OID);
				args[2] = cdp_int64_array(ma, nm, INT8OID);
				args[3] = cdp_int64_array(mi, nm, INT8OID);
				args[4] = cdp_int64_array(me, nm, INT8OID);
				run("INSERT INTO cdp.profile_merges (survivor, absorbed, anchor_id, identifier_id, event_id, method) "
					"SELECT s, a, x, i, e, 'rule' FROM unnest($1, $2, $3, $4, $5) AS u(s, a, x, i, e)",
					5, types, args, SPI_OK_INSERT);
			}
			{
				Oid			types[4] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
				Datum		args[4];

				args[0] = cdp_int64_array(la, nl, INT8OID);
				args[1] = cdp_int64_array(lb, nl, INT8OID);
				args[2] = cdp_int64_array(le, nl, INT8OID);
				args[3] = cdp_int64_array(lp, nl, INT8OID);
				run("INSERT INTO cdp.identity_links (anchor_id, identifier_id, event_id, position) "
					"SELECT a, i, e, p FROM unnest($1, $2, $3, $4) AS u(a, i, e, p) "
					"ON CONFLICT DO NOTHING",
					4, types, args, SPI_OK_INSERT);
			}
		}

		/* each event's anchor */
		{
			int64	   *ae = palloc(sizeof(int64) * n);
			TimestampTz *at = palloc(sizeof(TimestampTz) * n);
			int64	   *aa = palloc(sizeof(int64) * n);
			int			na = 0;

			for (e = 0; e < n; e++)
			{
				if (ev_n[e] == 0)
					continue;
				ae[na] = event_ids[e];
				at[na] = occurred[e];
				aa[na] = b.idents[ev_ids[e][0]].id;
				na++;
			}
			if (na > 0)
			{
				Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
				Datum		args[3];

				args[0] = cdp_int64_array(ae, na, INT8OID);
				args[1] = cdp_int64_array(at, na, TIMESTAMPTZOID);
				args[2] = cdp_int64_array(aa, na, INT8OID);
				run("INSERT INTO cdp.event_anchors (event_id, occurred_at, anchor_id) "
					"SELECT * FROM unnest($1, $2, $3)", 3, types, args, SPI_OK_INSERT);
			}
			/* the batch, for work that follows stitching (see cdp.stitch_batches) */
			if (na > 0)
			{
				Oid			types[3] = {INT8OID, INT8OID, INT4OID};
				Datum		args[3] = {Int64GetDatum(ae[0]), Int64GetDatum(ae[na - 1]), Int32GetDatum(na)};

				run("INSERT INTO cdp.stitch_batches (first_event_id, last_event_id, events) VALUES ($1, $2, $3)",
					3, types, args, SPI_OK_INSERT);
			}
		}
#undef REAL
	}

rejections:
	/* refused identifiers */
	if (n_rej > 0)
	{
		Oid			types[4] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		args[4];

		args[0] = cdp_int64_array(rej_event, n_rej, INT8OID);
		args[1] = cdp_text_array(rej_kind, n_rej);
		args[2] = cdp_text_array(rej_value, n_rej);
		args[3] = cdp_text_array(rej_reason, n_rej);
		run("INSERT INTO cdp.identifier_rejections (event_id, kind, value, reason) "
			"SELECT * FROM unnest($1, $2, $3, $4)", 4, types, args, SPI_OK_INSERT);
	}
	SPI_finish();
	INSTR_TIME_SET_CURRENT(t_written);
	INSTR_TIME_SUBTRACT(t_written, t_replayed);
	INSTR_TIME_SUBTRACT(t_replayed, t_looked_up);
	INSTR_TIME_SUBTRACT(t_looked_up, t_parsed);
	INSTR_TIME_SUBTRACT(t_parsed, t_start);
	elog(DEBUG1, "cdp stitch: %d events, %d identifiers: parse %.1f ms, look up %.1f ms, graph %.1f ms, write %.1f ms",
		 n, b.n_idents, INSTR_TIME_GET_MILLISEC(t_parsed), INSTR_TIME_GET_MILLISEC(t_looked_up),
		 INSTR_TIME_GET_MILLISEC(t_replayed), INSTR_TIME_GET_MILLISEC(t_written));

done:
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* --- the ingest path ------------------------------------------------------- */

/* Forgets remembered events at transaction end and on subtransaction abort. */
static void
stitch_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		n_remembered = 0;
		if (remembered_cxt != NULL)
			MemoryContextReset(remembered_cxt);
		remembered = NULL;
		max_remembered = 0;
	}
}

/*
 * A subtransaction that aborts takes its events with it (its rows are gone);
 * those of the levels above it stay to be stitched.
 */
static void
stitch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		int			level = GetCurrentTransactionNestLevel();

		while (n_remembered > 0 && remembered[n_remembered - 1].nest_level >= level)
			n_remembered--;
	}
}

/* Remembers a stored event for stitching at the end of its statement. */
void
cdp_stitch_remember(int64 event_id, TimestampTz occurred_at, Jsonb *identifiers)
{
	MemoryContext old;

	if (!callbacks_registered)
	{
		RegisterXactCallback(stitch_xact_callback, NULL);
		RegisterSubXactCallback(stitch_subxact_callback, NULL);
		remembered_cxt = AllocSetContextCreate(TopMemoryContext, "cdp stitch pending",
											   ALLOCSET_DEFAULT_SIZES);
		callbacks_registered = true;
	}
	old = MemoryContextSwitchTo(remembered_cxt);
	if (n_remembered == max_remembered)
	{
		max_remembered = max_remembered ? max_remembered * 2 : 1024;
		remembered = remembered ? repalloc(remembered, sizeof(Remembered) * max_remembered)
			: palloc(sizeof(Remembered) * max_remembered);
	}
	remembered[n_remembered].event_id = event_id;
	remembered[n_remembered].occurred_at = occurred_at;
	remembered[n_remembered].identifiers = (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(identifiers));
	remembered[n_remembered].nest_level = GetCurrentTransactionNestLevel();
	n_remembered++;
	MemoryContextSwitchTo(old);
	if (n_remembered >= STITCH_BATCH)
		cdp_stitch_pending();
}

/* Orders remembered events by event_id. */
static int
compare_remembered(const void *a, const void *b)
{
	int64		x = ((const Remembered *) a)->event_id;
	int64		y = ((const Remembered *) b)->event_id;

	return x < y ? -1 : x > y;
}

/* Stitches the remembered events. */
void
cdp_stitch_pending(void)
{
	int			n = n_remembered;
	int64	   *ids;
	TimestampTz *times;
	Jsonb	  **docs;
	int			i;

	if (n == 0)
		return;
	qsort(remembered, n, sizeof(Remembered), compare_remembered);
	ids = palloc(sizeof(int64) * n);
	times = palloc(sizeof(TimestampTz) * n);
	docs = palloc(sizeof(Jsonb *) * n);
	for (i = 0; i < n; i++)
	{
		ids[i] = remembered[i].event_id;
		times[i] = remembered[i].occurred_at;
		docs[i] = remembered[i].identifiers;
	}
	n_remembered = 0;			/* taken, even if stitching fails */
	stitch_events(n, ids, times, docs);
	MemoryContextReset(remembered_cxt);
	remembered = NULL;
	max_remembered = 0;
	pfree(ids);
	pfree(times);
	pfree(docs);
}
