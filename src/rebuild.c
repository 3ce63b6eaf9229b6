/*
 * rebuild.c
 *	  cdp.rebuild_identities(): the whole identity graph recomputed in one
 *	  pass over the stored links, with the union-find of src/core/idgraph.c
 *	  and the current limits and merge switches of cdp.identity_rules.
 *
 * The links table keeps the first event of every pair of identifiers seen
 * together, and each identifier the first event in which it was an anchor.
 * Replaying, in event order, "the anchor gets a profile" and then the
 * event's links makes the same decisions as stitching did event by event
 * (a refused link stays refused, a repeated link changes nothing), so the
 * partition is the same as the incremental one under the same rules.
 *
 * Decisions made by hand (cdp.identity_overrides) are replayed too: pairs
 * declared apart by cdp.unmerge from the start, merges by hand after the
 * links of the events that were stored when they were made.
 *
 * Profile ids stay stable: each profile of the result keeps the stored id
 * of its identifiers, preferring the part of a split profile that holds
 * identifiers born in it; a part left without one takes back the profile
 * one of its identifiers was born in (how cdp.unmerge restores the
 * absorbed profile), else a new id.  Stored profiles no longer used
 * forward to the profile that now holds their first identifier.  Every
 * identifier that changes profile is journaled in cdp.identifier_moves.
 *
 * cdp.unmerge(merge_id) records its decision and runs the same rebuild.
 *
 * Reads with cursors in batches, reports progress with NOTICEs, and checks
 * for interrupts, so a long rebuild can be followed and cancelled.
 *
 * The phases are one function each, on one Rebuild: read the identifiers,
 * read the decisions by hand, replay the links, choose stable ids, and
 * describe the moves for the identity store (identity_store.c), which
 * writes them and keeps the forwarding pointers.
 */
#include "identity.h"
#include "identity_store.h"
#include "stitch_queue.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(cdp_rebuild_identities);
PG_FUNCTION_INFO_V1(cdp_unmerge);

#define FETCH 100000

/* An identifier's first anchoring, to replay before the links of its event. */
typedef struct Anchoring
{
	int64		event_id;		/* first: sorted with cdp_compare_int64 */
	int32		node;
} Anchoring;

/* A merge by hand, replayed after the links of event after. */
typedef struct HandMerge
{
	int64		after;
	int64		merge_id;
	int32		a;
	int32		b;
	bool		force;
} HandMerge;

/*
 * A candidate stable id for a profile of the result: rank 0 for the id
 * its identifiers were born in and still hold, 1 for an id they hold, 2
 * for an id one was born in.
 */
typedef struct Claim
{
	int32		rank;
	int64		old_id;
	int64		label;
} Claim;

/* Counts of a rebuild. */
typedef struct RebuildResult
{
	int64		identifiers;
	int64		links;
	int64		profiles;
	int64		changed;
} RebuildResult;

/* The state of one rebuild. */
typedef struct Rebuild
{
	CdpIdGraph *g;
	int64		n_labels;		/* labels 1 .. n_labels handed out */
	/* identifiers in id order: node i is the i-th */
	int64	   *ids;
	int64	   *old_profile;
	int64	   *initial;
	bool	   *ruleless;		/* its kind lost its rule */
	int32		n_ids;
	int32		max_ids;
	Anchoring  *anch;			/* first anchorings, in event order */
	int32		n_anch;
	int32		next_anch;
	HandMerge  *hand;			/* merges by hand, in event order */
	int32		n_hand;
	int32		next_hand;
	/* stable ids: final[label] is the profile id of a label */
	int64	   *final;
	int64		n_profiles;
	RebuildResult res;
	CdpIdentityChanges changes;
} Rebuild;

/* Labels 1, 2, ... in order of need. */
static int64_t
rebuild_label(void *arg)
{
	return ++((Rebuild *) arg)->n_labels;
}

/* Orders claims by rank, then id, then label. */
static int
compare_claim(const void *a, const void *b)
{
	const Claim *x = a;
	const Claim *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->old_id != y->old_id)
		return x->old_id < y->old_id ? -1 : 1;
	return x->label < y->label ? -1 : x->label > y->label;
}

/* Node of an identifier id (ids sorted ascending), or -1. */
static int32
node_of(const Rebuild *rb, int64 id)
{
	int32		lo = 0;
	int32		hi = rb->n_ids - 1;

	while (lo <= hi)
	{
		int32		mid = lo + (hi - lo) / 2;

		if (rb->ids[mid] == id)
			return mid;
		if (rb->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* A huge array of n elements of size bytes, grown from old (or new). */
static void *
grow(void *old, Size size, int32 n)
{
	return old ? repalloc_huge(old, size * n) : palloc_extended(size * n, MCXT_ALLOC_HUGE);
}

/*
 * Calls row on each row of a cursor, FETCH rows at a time (then fetched,
 * if given), checking for interrupts; closes the cursor.
 */
static void
for_each_row(Rebuild *rb, Portal cur, void (*row) (Rebuild *, uint64),
			 void (*fetched) (Rebuild *))
{
	for (;;)
	{
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(cur, true, FETCH);
		if (SPI_processed == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
			row(rb, r);
		SPI_freetuptable(SPI_tuptable);
		if (fetched != NULL)
			fetched(rb);
	}
	SPI_cursor_close(cur);
}

/* Room for need identifiers. */
static void
reserve_identifiers(Rebuild *rb, uint64 need)
{
	if (need <= (uint64) rb->max_ids)
		return;
	rb->max_ids = (int32) Max((uint64) rb->max_ids * 2, need);
	rb->ids = grow(rb->ids, sizeof(int64), rb->max_ids);
	rb->old_profile = grow(rb->old_profile, sizeof(int64), rb->max_ids);
	rb->initial = grow(rb->initial, sizeof(int64), rb->max_ids);
	rb->anch = grow(rb->anch, sizeof(Anchoring), rb->max_ids);
	rb->ruleless = grow(rb->ruleless, sizeof(bool), rb->max_ids);
}

/* Adds identifier row r of the last fetch as the next node. */
static void
add_identifier(Rebuild *rb, uint64 r)
{
	bool		isnull;
	int			rule = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
	int64		first_anchor = cdp_spi_int64(r, 4);
	int32		node;

	reserve_identifiers(rb, (uint64) rb->n_ids + 1);
	/* a kind whose rule was removed still gets a node, of its own */
	node = cdp_idgraph_add_node(rb->g, rule >= 0 ? rule : 0);
	if (node != rb->n_ids)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rb->ids[node] = cdp_spi_int64(r, 1);
	rb->old_profile[node] = cdp_spi_int64(r, 3);
	rb->initial[node] = cdp_spi_int64(r, 5);
	rb->ruleless[node] = rule < 0;
	if (rule < 0)
		cdp_idgraph_ensure_profile(rb->g, node);
	else if (first_anchor != 0)
	{
		rb->anch[rb->n_anch].event_id = first_anchor;
		rb->anch[rb->n_anch].node = node;
		rb->n_anch++;
	}
	rb->n_ids++;
}

/* Phase 1: the identifiers in id order, the kind as its rule number. */
static void
read_identifiers(Rebuild *rb)
{
	int			n_rules;
	const CdpRule *rules = cdp_identity_rules(&n_rules);
	char	  **kinds = palloc(sizeof(char *) * n_rules);
	Oid			types[1] = {TEXTARRAYOID};
	Datum		args[1];
	int			k;

	for (k = 0; k < n_rules; k++)
		kinds[k] = rules[k].kind;
	args[0] = cdp_text_array(kinds, n_rules);
	for_each_row(rb, cdp_spi_cursor("SELECT i.identifier_id, coalesce(pg_catalog.array_position($1, i.kind), 0) - 1, "
						 "i.profile_id, coalesce(i.first_anchor_event_id, 0), i.initial_profile_id "
						 "FROM cdp.identifiers i ORDER BY 1",
						 1, types, args), add_identifier, NULL);
	if (rb->n_anch > 0)
		qsort(rb->anch, rb->n_anch, sizeof(Anchoring), cdp_compare_int64);	/* by event_id */
	ereport(NOTICE, (errmsg_plural("rebuild: %d identifier read", "rebuild: %d identifiers read",
								   rb->n_ids, rb->n_ids)));
}

/* Phase 2: decisions by hand: pairs apart now, merges in event order. */
static void
read_overrides(Rebuild *rb)
{
	uint64		r;

	cdp_spi_run("SELECT action = 'merge', identifier_a, identifier_b, after_event_id, force, merge_id "
				"FROM cdp.identity_overrides WHERE lifted_at IS NULL ORDER BY after_event_id, override_id",
				0, NULL, NULL, SPI_OK_SELECT);
	rb->hand = palloc(sizeof(HandMerge) * (SPI_processed + 1));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		na = node_of(rb, cdp_spi_int64(r, 2));
		int32		nb = node_of(rb, cdp_spi_int64(r, 3));
		HandMerge  *m = &rb->hand[rb->n_hand];

		if (na < 0 || nb < 0)
			continue;			/* an identifier deleted by hand */
		if (!DatumGetBool(SPI_getbinval(t, d, 1, &isnull)))
		{
			cdp_idgraph_keep_apart(rb->g, na, nb);
			continue;
		}
		m->a = na;
		m->b = nb;
		m->after = cdp_spi_int64(r, 4);
		m->force = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
		m->merge_id = cdp_spi_int64(r, 6);
		rb->n_hand++;
	}
}

/* Gives a profile to the identifiers first anchored at or before event ev. */
static void
anchor_until(Rebuild *rb, int64 ev)
{
	while (rb->next_anch < rb->n_anch && rb->anch[rb->next_anch].event_id <= ev)
		cdp_idgraph_ensure_profile(rb->g, rb->anch[rb->next_anch++].node);
}

/*
 * Replays what comes before the links of event ev: merges by hand made
 * before it (after their events' anchors), then its anchors.
 */
static void
replay_until(Rebuild *rb, int64 ev)
{
	while (rb->next_hand < rb->n_hand && rb->hand[rb->next_hand].after < ev)
	{
		HandMerge  *m = &rb->hand[rb->next_hand++];
		CdpLink		l;

		anchor_until(rb, m->after);
		l = cdp_idgraph_merge(rb->g, m->a, m->b, m->force);
		if (l.outcome != CDP_LINK_MERGED && l.outcome != CDP_LINK_SAME)
			ereport(NOTICE,
					(errmsg("rebuild: merge by hand " INT64_FORMAT " no longer applies", m->merge_id),
					 errdetail("%s", l.outcome == CDP_LINK_APART ? "A later unmerge keeps the two profiles apart." :
							   "It would break a limit of cdp.identity_rules and was not forced.")));
	}
	anchor_until(rb, ev);
}

/* Replays link row r of the last fetch. */
static void
replay_link(Rebuild *rb, uint64 r)
{
	int32		an;
	int32		on;

	replay_until(rb, cdp_spi_int64(r, 3));
	an = node_of(rb, cdp_spi_int64(r, 1));
	on = node_of(rb, cdp_spi_int64(r, 2));
	if (an < 0 || on < 0 || rb->ruleless[an] || rb->ruleless[on])
		return;					/* deleted by hand, or its kind lost its rule */
	cdp_idgraph_ensure_profile(rb->g, an);
	(void) cdp_idgraph_link(rb->g, an, on);
	rb->res.links++;
}

/* Reports the links replayed, about every million. */
static void
report_links(Rebuild *rb)
{
	if (rb->res.links % 1000000 < FETCH)
		ereport(NOTICE, (errmsg_plural("rebuild: " INT64_FORMAT " link replayed",
									   "rebuild: " INT64_FORMAT " links replayed",
									   rb->res.links, rb->res.links)));
}

/* Phase 3: the links in event order, each event's anchors first. */
static void
replay_links(Rebuild *rb)
{
	for_each_row(rb, cdp_spi_cursor("SELECT anchor_id, identifier_id, event_id "
									"FROM cdp.identity_links ORDER BY event_id, position",
									0, NULL, NULL), replay_link, report_links);
	replay_until(rb, PG_INT64_MAX);
}

#define TAKEN(taken, id) ((taken)[(id) >> 3] & (1 << ((id) & 7)))
#define TAKE(taken, id) ((taken)[(id) >> 3] |= (uint8) (1 << ((id) & 7)))

/* Gives each claim's label its id unless another label took it. */
static void
grant_claims(Rebuild *rb, Claim *claims, int64 n, uint8 *taken)
{
	int64		i;

	if (n > 0)
		qsort(claims, n, sizeof(Claim), compare_claim);
	for (i = 0; i < n; i++)
	{
		if (rb->final[claims[i].label] != 0 || TAKEN(taken, claims[i].old_id))
			continue;			/* another part of a split profile has it */
		rb->final[claims[i].label] = claims[i].old_id;
		TAKE(taken, claims[i].old_id);
	}
}

/*
 * Phase 4a: the best claim of each label in use (its label is 0 if not):
 * the id its identifiers were born in and hold, else the lowest they hold.
 * Sets *max_id to the largest id seen.
 */
static Claim *
best_claims(Rebuild *rb, int64 *max_id)
{
	Claim	   *best = palloc_extended(sizeof(Claim) * (rb->n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	int64		i;

	*max_id = 0;
	for (i = 0; i < rb->n_ids; i++)
	{
		int64		l = cdp_idgraph_profile(rb->g, (int32) i);
		int32		rank = rb->initial[i] == rb->old_profile[i] ? 0 : 1;

		*max_id = Max(*max_id, Max(rb->old_profile[i], rb->initial[i]));
		if (best[l].label == 0 || rank < best[l].rank ||
			(rank == best[l].rank && rb->old_profile[i] < best[l].old_id))
		{
			best[l].rank = rank;
			best[l].old_id = rb->old_profile[i];
			best[l].label = l;
		}
	}
	return best;
}

/* Phase 4b: a part left without an id takes back one its identifiers were born in. */
static void
claim_birth_ids(Rebuild *rb, uint8 *taken)
{
	Claim	   *born = NULL;
	int64		n_born = 0;
	int64		i;

	for (i = 0; i < rb->n_ids; i++)
	{
		int64		l = cdp_idgraph_profile(rb->g, (int32) i);

		if (rb->final[l] != 0 || rb->initial[i] == 0 || TAKEN(taken, rb->initial[i]))
			continue;
		if (born == NULL)
			born = palloc_extended(sizeof(Claim) * (rb->n_ids + 1), MCXT_ALLOC_HUGE);
		born[n_born].rank = 2;
		born[n_born].old_id = rb->initial[i];
		born[n_born].label = l;
		n_born++;
	}
	grant_claims(rb, born, n_born, taken);
}

/*
 * Phase 4: stable ids for the profiles of the result; the others get new
 * ids, in label order (older parts first), as new profiles.
 */
static void
choose_ids(Rebuild *rb)
{
	int64		max_id;
	Claim	   *best = best_claims(rb, &max_id);
	Claim	   *claims = palloc_extended(sizeof(Claim) * (rb->n_labels + 1), MCXT_ALLOC_HUGE);
	uint8	   *taken = palloc_extended(max_id / 8 + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	int64	   *new_ids;
	int64		n_new = 0;
	int64		i;

	rb->final = palloc_extended(sizeof(int64) * (rb->n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (i = 1; i <= rb->n_labels; i++)
		if (best[i].label != 0)
			claims[rb->res.profiles++] = best[i];
	grant_claims(rb, claims, rb->res.profiles, taken);
	claim_birth_ids(rb, taken);
	for (i = 1; i <= rb->n_labels; i++)
		if (best[i].label != 0 && rb->final[i] == 0)
			n_new++;
	new_ids = cdp_store_profile_ids((int) n_new);
	n_new = 0;
	for (i = 1; i <= rb->n_labels; i++)
	{
		CdpNewProfile *p;

		if (best[i].label == 0 || rb->final[i] != 0)
			continue;
		p = CDP_PUSH(rb->changes.profiles);
		memset(p, 0, sizeof(CdpNewProfile));
		p->profile_id = rb->final[i] = new_ids[n_new++];
	}
}

#undef TAKEN
#undef TAKE

/* Phase 5: the identifiers whose profile changed, as moves. */
static void
record_moves(Rebuild *rb, const char *cause)
{
	int32		i;

	rb->changes.move_cause = cause;
	for (i = 0; i < rb->n_ids; i++)
	{
		int64		p = rb->final[cdp_idgraph_profile(rb->g, i)];
		CdpMove    *m;

		if (p == rb->old_profile[i])
			continue;
		m = CDP_PUSH(rb->changes.moves);
		m->identifier_id = rb->ids[i];
		m->from_profile = rb->old_profile[i];
		m->to_profile = p;
	}
	rb->res.changed = rb->changes.moves.n;
}

/*
 * Recomputes every profile from the stored links and the decisions by hand
 * in force, under the stitching lock; identifiers that change profile are
 * journaled with cause.  Runs inside an SPI connection; its reads are not
 * read-only, so that they see what the caller wrote just before.
 */
static RebuildResult
rebuild(const char *cause)
{
	Rebuild		rb;
	int			n_rules;

	(void) cdp_identity_rules(&n_rules);
	if (n_rules == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdp.identity_rules is empty"),
				 errhint("Identity resolution needs at least one rule.")));
	memset(&rb, 0, sizeof(rb));
	rb.g = cdp_identity_graph(rebuild_label, &rb);
	cdp_store_lock();
	read_identifiers(&rb);
	read_overrides(&rb);
	replay_links(&rb);
	choose_ids(&rb);
	record_moves(&rb, cause);
	cdp_store_write(&rb.changes);
	rb.res.identifiers = rb.n_ids;
	return rb.res;
}

/* cdp.rebuild_identities(): recomputes every profile; returns counts. */
Datum
cdp_rebuild_identities(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	RebuildResult r;
	bool		more;
	Datum		result[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	cdp_spi_connect();
	(void) cdp_stitch_queue_run(0, 0, &more);	/* bulk loads' links first */
	r = rebuild("rebuild");
	cdp_spi_finish();

	result[0] = Int64GetDatum(r.identifiers);
	result[1] = Int64GetDatum(r.links);
	result[2] = Int64GetDatum(r.profiles);
	result[3] = Int64GetDatum(r.changed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}

/* Current profile of an identifier, or 0. */
static int64
profile_of(int64 identifier_id)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(identifier_id)};

	if (cdp_spi_run("SELECT profile_id FROM cdp.identifiers WHERE identifier_id = $1",
					1, t, v, SPI_OK_SELECT) != 1)
		return 0;
	return cdp_spi_int64(0, 1);
}

/* The link of a merge of the journal and its two profiles then. */
typedef struct MergeLink
{
	int64		anchor_id;
	int64		identifier_id;
	bool		by_hand;
	int64		survivor;
	int64		absorbed;
} MergeLink;

/* Reads a merge to undo (locked), or fails if it cannot be undone. */
static MergeLink
read_merge(int64 merge_id)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(merge_id)};
	MergeLink	m;
	char	   *undone;
	bool		isnull;

	if (cdp_spi_run("SELECT anchor_id, identifier_id, method = 'hand', undone_at::text, survivor, absorbed "
					"FROM cdp.profile_merges WHERE merge_id = $1 FOR UPDATE",
					1, t, v, SPI_OK_SELECT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merge " INT64_FORMAT " does not exist", merge_id),
				 errhint("Merges are listed in cdp.profile_merges.")));
	undone = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	if (undone != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("merge " INT64_FORMAT " was already undone", merge_id),
				 errdetail("It was undone at %s.", undone)));
	m.anchor_id = cdp_spi_int64(0, 1);
	m.identifier_id = cdp_spi_int64(0, 2);
	m.by_hand = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	m.survivor = cdp_spi_int64(0, 5);
	m.absorbed = cdp_spi_int64(0, 6);
	if (m.identifier_id == 0 || profile_of(m.anchor_id) == 0 || profile_of(m.identifier_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("merge " INT64_FORMAT " cannot be undone: an identifier of its link no longer exists", merge_id)));
	return m;
}

/*
 * Records the undoing of a merge: the journal, then the decision every
 * later stitching and rebuild honours (reason may be a NULL datum).
 */
static void
record_unmerge(int64 merge_id, const MergeLink *m, Datum reason, bool reason_null)
{
	Oid			t[4] = {INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		v[4] = {Int64GetDatum(merge_id), Int64GetDatum(m->anchor_id),
	Int64GetDatum(m->identifier_id), reason};
	char		nulls[4] = {' ', ' ', ' ', reason_null ? 'n' : ' '};

	cdp_store_undo_merge(merge_id);
	if (m->by_hand)
		cdp_spi_run("UPDATE cdp.identity_overrides SET lifted_at = pg_catalog.now() "
					"WHERE action = 'merge' AND merge_id = $1 AND lifted_at IS NULL",
					1, t, v, SPI_OK_UPDATE);
	cdp_spi_exec("INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, reason) "
				 "SELECT 'unmerge', $1, $2, $3, CASE WHEN is_called THEN last_value ELSE 0 END, $4 "
				 "FROM cdp.events_event_id_seq",
				 4, t, v, nulls, SPI_OK_INSERT);
}

/*
 * cdp.unmerge(merge_id, reason): declares the two identifiers of a merge's
 * link two people and recomputes the graph; returns the profile of each and
 * how many identifiers moved.
 */
Datum
cdp_unmerge(PG_FUNCTION_ARGS)
{
	int64		merge_id;
	TupleDesc	desc;
	MergeLink	m;
	RebuildResult r;
	int64		pa;
	int64		pi;
	Datum		result[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("merge_id must not be null")));
	merge_id = PG_GETARG_INT64(0);

	cdp_spi_connect();
	cdp_store_lock();
	m = read_merge(merge_id);
	record_unmerge(merge_id, &m, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	r = rebuild(psprintf("unmerge " INT64_FORMAT, merge_id));
	pa = profile_of(m.anchor_id);
	pi = profile_of(m.identifier_id);
	/* the survivor's side first: the link's anchor may have been absorbed */
	result[0] = Int64GetDatum(pi == m.survivor || pa == m.absorbed ? pi : pa);
	result[1] = Int64GetDatum(pi == m.survivor || pa == m.absorbed ? pa : pi);
	result[2] = Int64GetDatum(r.changed);
	cdp_spi_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}
