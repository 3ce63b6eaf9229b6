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
 */
#include "identity.h"
#include "idgraph.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(cdp_rebuild_identities);
PG_FUNCTION_INFO_V1(cdp_unmerge);

#define FETCH 100000

/* An identifier's first anchoring, to replay before the links of its event. */
typedef struct Anchoring
{
	int64		event_id;
	int32		node;
} Anchoring;

static int64 rebuild_next_label;

/* Labels 1, 2, ... in order of need. */
static int64_t
rebuild_label(void *arg)
{
	return ++rebuild_next_label;
}

/* Orders anchorings by event. */
static int
compare_anchoring(const void *a, const void *b)
{
	int64		x = ((const Anchoring *) a)->event_id;
	int64		y = ((const Anchoring *) b)->event_id;

	return x < y ? -1 : x > y;
}

/* Node of an identifier id (ids sorted ascending), or -1. */
static int32
node_of(const int64 *ids, int32 n, int64 id)
{
	int32		lo = 0;
	int32		hi = n - 1;

	while (lo <= hi)
	{
		int32		mid = lo + (hi - lo) / 2;

		if (ids[mid] == id)
			return mid;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

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

/* Counts of a rebuild. */
typedef struct RebuildResult
{
	int64		identifiers;
	int64		links;
	int64		profiles;
	int64		changed;
} RebuildResult;

/*
 * Recomputes every profile from the stored links and the decisions by hand
 * in force, under the stitching lock; identifiers that change profile are
 * journaled with cause.  Runs inside an SPI connection; its reads are not
 * read-only, so that they see what the caller wrote just before.
 */
static RebuildResult
rebuild(const char *cause)
{
	int			n_rules;
	const CdpRule *rules = cdp_identity_rules(&n_rules);
	int		   *limits = palloc(sizeof(int) * (n_rules > 0 ? n_rules : 1));
	unsigned char *merges = palloc(n_rules > 0 ? n_rules : 1);
	CdpIdGraph *g;
	int64	   *ids = NULL;
	int64	   *old_profile = NULL;
	int64	   *initial = NULL;
	bool	   *ruleless = NULL;
	int32		n_ids = 0;
	int32		max_ids = 0;
	Anchoring  *anch = NULL;
	int32		n_anch = 0;
	int32		a = 0;
	HandMerge  *hand = NULL;
	int32		n_hand = 0;
	int32		h = 0;
	RebuildResult res = {0, 0, 0, 0};
	Portal		cur;
	int			k;

	if (n_rules == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdp.identity_rules is empty"),
				 errhint("Identity resolution needs at least one rule.")));
	for (k = 0; k < n_rules; k++)
	{
		limits[k] = rules[k].limit;
		merges[k] = rules[k].merges;
	}
	rebuild_next_label = 0;
	g = cdp_idgraph_create(n_rules, limits, merges, rebuild_label, NULL);
	if (g == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(STITCH_LOCK_KEY1),
						Int32GetDatum(STITCH_LOCK_KEY2));

	PG_TRY();
	{
		/*
		 * 1. identifiers in id order: node i is the i-th.  The kind comes as
		 * its rule number.
		 */
		{
			char	  **kinds = palloc(sizeof(char *) * n_rules);
			Oid			kt[1] = {TEXTARRAYOID};
			Datum		kv[1];

			for (k = 0; k < n_rules; k++)
				kinds[k] = rules[k].kind;
			kv[0] = cdp_text_array(kinds, n_rules);
			cur = SPI_cursor_open_with_args(NULL, "SELECT i.identifier_id, coalesce(array_position($1, i.kind), 0) - 1, "
											"i.profile_id, coalesce(i.first_anchor_event_id, 0), i.initial_profile_id "
											"FROM cdp.identifiers i ORDER BY 1",
											1, kt, kv, NULL, false, 0);
		}
		for (;;)
		{
			uint64		r;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(cur, true, FETCH);
			if (SPI_processed == 0)
				break;
			if (n_ids + SPI_processed > (uint64) max_ids)
			{
				max_ids = (int32) Max((uint64) max_ids * 2, n_ids + SPI_processed);
				ids = ids ? repalloc_huge(ids, sizeof(int64) * max_ids) : palloc_extended(sizeof(int64) * max_ids, MCXT_ALLOC_HUGE);
				old_profile = old_profile ? repalloc_huge(old_profile, sizeof(int64) * max_ids)
					: palloc_extended(sizeof(int64) * max_ids, MCXT_ALLOC_HUGE);
				initial = initial ? repalloc_huge(initial, sizeof(int64) * max_ids)
					: palloc_extended(sizeof(int64) * max_ids, MCXT_ALLOC_HUGE);
				anch = anch ? repalloc_huge(anch, sizeof(Anchoring) * max_ids)
					: palloc_extended(sizeof(Anchoring) * max_ids, MCXT_ALLOC_HUGE);
				ruleless = ruleless ? repalloc_huge(ruleless, sizeof(bool) * max_ids)
					: palloc_extended(sizeof(bool) * max_ids, MCXT_ALLOC_HUGE);
			}
			for (r = 0; r < SPI_processed; r++)
			{
				HeapTuple	t = SPI_tuptable->vals[r];
				TupleDesc	d = SPI_tuptable->tupdesc;
				bool		isnull;
				int			rule = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
				int64		fa = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
				int32		node;

				/* a kind whose rule was removed still gets a node, of its own */
				node = cdp_idgraph_add_node(g, rule >= 0 ? rule : 0);
				if (node != n_ids)
					ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
				ids[n_ids] = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
				old_profile[n_ids] = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
				initial[n_ids] = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
				ruleless[n_ids] = rule < 0;
				if (rule < 0)
					cdp_idgraph_ensure_profile(g, node);
				else if (fa != 0)
				{
					anch[n_anch].event_id = fa;
					anch[n_anch].node = node;
					n_anch++;
				}
				n_ids++;
			}
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(cur);
		if (n_anch > 0)
			qsort(anch, n_anch, sizeof(Anchoring), compare_anchoring);
		ereport(NOTICE, (errmsg("rebuild: %d identifiers read", n_ids)));

		/* 2. decisions by hand: pairs apart now, merges in event order */
		{
			uint64		r;

		if (SPI_execute("SELECT action = 'merge', identifier_a, identifier_b, after_event_id, force, merge_id "
						"FROM cdp.identity_overrides WHERE lifted_at IS NULL ORDER BY after_event_id, override_id",
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read cdp.identity_overrides");
		hand = palloc(sizeof(HandMerge) * (SPI_processed + 1));
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	t = SPI_tuptable->vals[r];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			int32		na = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 2, &isnull)));
			int32		nb = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 3, &isnull)));

			if (na < 0 || nb < 0)
				continue;		/* an identifier deleted by hand */
			if (!DatumGetBool(SPI_getbinval(t, d, 1, &isnull)))
			{
				cdp_idgraph_keep_apart(g, na, nb);
				continue;
			}
			hand[n_hand].a = na;
			hand[n_hand].b = nb;
			hand[n_hand].after = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
			hand[n_hand].force = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
			hand[n_hand].merge_id = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
			n_hand++;
		}
		}

		/* 3. links in event order, each event's anchors first */
		cur = SPI_cursor_open_with_args(NULL, "SELECT anchor_id, identifier_id, event_id "
										"FROM cdp.identity_links ORDER BY event_id, position",
										0, NULL, NULL, NULL, false, 0);
		for (;;)
		{
			uint64		r;
			bool		done;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(cur, true, FETCH);
			done = SPI_processed == 0;
			for (r = 0; r <= SPI_processed; r++)
			{
				HeapTuple	t;
				TupleDesc	d;
				bool		isnull;
				int32		an;
				int32		on;
				int64		ev = PG_INT64_MAX;

				if (r < SPI_processed)
					ev = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
				else if (!done)
					break;
				/* merges by hand made before this event, after their events' anchors */
				while (h < n_hand && hand[h].after < ev)
				{
					CdpLink		l;

					while (a < n_anch && anch[a].event_id <= hand[h].after)
						cdp_idgraph_ensure_profile(g, anch[a++].node);
					l = cdp_idgraph_merge(g, hand[h].a, hand[h].b, hand[h].force);
					if (l.outcome != CDP_LINK_MERGED && l.outcome != CDP_LINK_SAME)
						ereport(NOTICE,
								(errmsg("rebuild: merge by hand " INT64_FORMAT " no longer applies", hand[h].merge_id),
								 errdetail("%s", l.outcome == CDP_LINK_APART ? "A later unmerge keeps the two profiles apart." :
										   "It would break a limit of cdp.identity_rules and was not forced.")));
					h++;
				}
				while (a < n_anch && anch[a].event_id <= ev)
					cdp_idgraph_ensure_profile(g, anch[a++].node);
				if (r == SPI_processed)
					break;
				t = SPI_tuptable->vals[r];
				d = SPI_tuptable->tupdesc;
				an = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 1, &isnull)));
				on = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 2, &isnull)));
				if (an < 0 || on < 0 || ruleless[an] || ruleless[on])
					continue;	/* deleted by hand, or its kind lost its rule */
				cdp_idgraph_ensure_profile(g, an);
				(void) cdp_idgraph_link(g, an, on);
				res.links++;
			}
			SPI_freetuptable(SPI_tuptable);
			if (done)
				break;
			if (res.links % 1000000 < FETCH)
				ereport(NOTICE, (errmsg("rebuild: " INT64_FORMAT " links replayed", res.links)));
		}
		SPI_cursor_close(cur);

		/* 4. stable ids */
		{
			int64		n_labels = rebuild_next_label;
			Claim	   *best = palloc_extended(sizeof(Claim) * (n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			int64	   *final = palloc_extended(sizeof(int64) * (n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			Claim	   *claims = palloc_extended(sizeof(Claim) * (n_labels + 1), MCXT_ALLOC_HUGE);
			int64		n_claims = 0;
			int64		n_new = 0;
			int64		max_id = 0;
			uint8	   *taken;
			int64		i;
			int64	   *upd_id = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *upd_prof = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *upd_old = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *new_ids;
			Oid			types2[2] = {INT8ARRAYOID, INT8ARRAYOID};

#define TAKEN(id) (taken[(id) >> 3] & (1 << ((id) & 7)))
#define TAKE(id) (taken[(id) >> 3] |= (uint8) (1 << ((id) & 7)))

			/* pass 1: each profile of the result claims the id its identifiers hold */
			for (i = 0; i < n_ids; i++)
			{
				int64		l = cdp_idgraph_profile(g, (int32) i);
				int32		rank = initial[i] == old_profile[i] ? 0 : 1;

				max_id = Max(max_id, Max(old_profile[i], initial[i]));
				if (best[l].label == 0 || rank < best[l].rank ||
					(rank == best[l].rank && old_profile[i] < best[l].old_id))
				{
					best[l].rank = rank;
					best[l].old_id = old_profile[i];
					best[l].label = l;
				}
			}
			taken = palloc_extended(max_id / 8 + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			for (i = 1; i <= n_labels; i++)
				if (best[i].label != 0)
					claims[n_claims++] = best[i];
			qsort(claims, n_claims, sizeof(Claim), compare_claim);
			for (i = 0; i < n_claims; i++)
			{
				if (TAKEN(claims[i].old_id))
					continue;	/* another part of a split profile has it */
				final[claims[i].label] = claims[i].old_id;
				TAKE(claims[i].old_id);
			}

			/* pass 2: a part left without takes back a profile one of its identifiers was born in */
			{
				Claim	   *born = NULL;
				int64		n_born = 0;

				for (i = 0; i < n_ids; i++)
				{
					int64		l = cdp_idgraph_profile(g, (int32) i);

					if (final[l] != 0 || initial[i] == 0 || TAKEN(initial[i]))
						continue;
					if (born == NULL)
						born = palloc_extended(sizeof(Claim) * (n_ids + 1), MCXT_ALLOC_HUGE);
					born[n_born].rank = 2;
					born[n_born].old_id = initial[i];
					born[n_born].label = l;
					n_born++;
				}
				if (n_born > 0)
					qsort(born, n_born, sizeof(Claim), compare_claim);
				for (i = 0; i < n_born; i++)
				{
					if (final[born[i].label] != 0 || TAKEN(born[i].old_id))
						continue;
					final[born[i].label] = born[i].old_id;
					TAKE(born[i].old_id);
				}
			}
#undef TAKEN
#undef TAKE
			for (i = 0; i < n_claims; i++)
				if (final[claims[i].label] == 0)
					n_new++;

			/* new ids, in label order (older parts first) */
			{
				Oid			t1[1] = {INT4OID};
				Datum		v1[1] = {Int32GetDatum((int32) n_new)};
				int64		j = 0;

				new_ids = palloc(sizeof(int64) * (n_new + 1));
				if (n_new > 0)
				{
					SPI_execute_with_args("SELECT nextval('cdp.profiles_profile_id_seq') FROM generate_series(1, $1)",
										  1, t1, v1, NULL, false, 0);
					for (i = 0; i < (int64) SPI_processed; i++)
					{
						bool		isnull;

						new_ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
					}
				}
				for (i = 1; i <= n_labels; i++)
					if (best[i].label != 0 && final[i] == 0)
						final[i] = new_ids[j++];
			}
			res.profiles = n_claims;

			/* identifiers whose profile changed */
			for (i = 0; i < n_ids; i++)
			{
				int64		p = final[cdp_idgraph_profile(g, (int32) i)];

				if (p != old_profile[i])
				{
					upd_id[res.changed] = ids[i];
					upd_prof[res.changed] = p;
					upd_old[res.changed] = old_profile[i];
					res.changed++;
				}
			}
			if (n_new > 0)
			{
				Oid			t1[1] = {INT8ARRAYOID};
				Datum		v1[1] = {cdp_int64_array(new_ids, (int) n_new, INT8OID)};

				SPI_execute_with_args("INSERT INTO cdp.profiles (profile_id) SELECT unnest($1)",
									  1, t1, v1, NULL, false, 0);
			}
			if (res.changed > 0)
			{
				Oid			types4[4] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTOID};
				Datum		v4[4] = {cdp_int64_array(upd_id, (int) res.changed, INT8OID),
					cdp_int64_array(upd_prof, (int) res.changed, INT8OID),
					cdp_int64_array(upd_old, (int) res.changed, INT8OID),
				CStringGetTextDatum(cause)};

				if (SPI_execute_with_args("UPDATE cdp.identifiers i SET profile_id = u.p "
										  "FROM unnest($1, $2) AS u(i, p) WHERE i.identifier_id = u.i",
										  2, types4, v4, NULL, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "could not update cdp.identifiers");
				if (SPI_execute_with_args("INSERT INTO cdp.identifier_moves (identifier_id, from_profile, to_profile, cause) "
										  "SELECT u.i, u.o, u.p, $4 FROM unnest($1, $2, $3) AS u(i, p, o)",
										  4, types4, v4, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not journal moved identifiers");
			}

			/* live profiles: revive the reused ones, forward the others */
			if (res.changed > 0)
			{
				/* a profile an identifier left forwards to where it went */
				Datum		v2[2] = {cdp_int64_array(upd_old, (int) res.changed, INT8OID),
				cdp_int64_array(upd_prof, (int) res.changed, INT8OID)};

				SPI_execute("UPDATE cdp.profiles p SET merged_into = NULL, merged_at = NULL "
							"WHERE merged_into IS NOT NULL "
							"AND EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)",
							false, 0);

				/* the first identifier (lowest id) of an unused profile decides */
				SPI_execute_with_args("UPDATE cdp.profiles p SET merged_into = f.t, merged_at = now() "
									  "FROM (SELECT DISTINCT ON (f) f, t FROM unnest($1, $2) WITH ORDINALITY AS u(f, t, o) ORDER BY f, o) f "
									  "WHERE p.profile_id = f.f AND p.merged_into IS NULL "
									  "AND NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)",
									  2, types2, v2, NULL, false, 0);
				/*
				 * a merged-away profile that forwarded to one identifiers left
				 * forwards to where its first identifier is now
				 */
				SPI_execute_with_args("UPDATE cdp.profiles p SET merged_into = f.now_in "
									  "FROM (SELECT DISTINCT ON (i.initial_profile_id) i.initial_profile_id AS born, "
									  "i.profile_id AS now_in FROM cdp.identifiers i ORDER BY i.initial_profile_id, i.identifier_id) f "
									  "WHERE p.merged_into = ANY ($1) AND p.profile_id = f.born AND p.merged_into <> f.now_in",
									  1, types2, v2, NULL, false, 0);
				/* chains end at live profiles */
				do
					SPI_execute("UPDATE cdp.profiles p SET merged_into = q.merged_into "
								"FROM cdp.profiles q WHERE p.merged_into = q.profile_id AND q.merged_into IS NOT NULL",
								false, 0);
				while (SPI_processed > 0);
			}
		}
	}
	PG_CATCH();
	{
		cdp_idgraph_free(g);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cdp_idgraph_free(g);
	res.identifiers = n_ids;
	return res;
}

/* cdp.rebuild_identities(): recomputes every profile; returns counts. */
Datum
cdp_rebuild_identities(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	RebuildResult r;
	Datum		result[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	r = rebuild("rebuild");
	SPI_finish();

	result[0] = Int64GetDatum(r.identifiers);
	result[1] = Int64GetDatum(r.links);
	result[2] = Int64GetDatum(r.profiles);
	result[3] = Int64GetDatum(r.changed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}

/* Current profile of an identifier. */
static int64
profile_of(int64 identifier_id)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(identifier_id)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT profile_id FROM cdp.identifiers WHERE identifier_id = $1",
							  1, t, v, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
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
	Oid			t3[2] = {INT8OID, TEXTOID};
	Datum		v3[2];
	char		n3[2] = {' ', ' '};
	HeapTuple	row;
	TupleDesc	rd;
	bool		isnull;
	int64		anchor_id;
	int64		identifier_id;
	bool		by_hand;
	int64		survivor;
	int64		absorbed;
	char	   *cause;
	RebuildResult r;
	Datum		result[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("merge_id must not be null")));
	merge_id = PG_GETARG_INT64(0);
	v3[0] = Int64GetDatum(merge_id);
	v3[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	n3[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	cause = psprintf("unmerge " INT64_FORMAT, merge_id);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(STITCH_LOCK_KEY1),
						Int32GetDatum(STITCH_LOCK_KEY2));

	if (SPI_execute_with_args("SELECT anchor_id, identifier_id, method = 'hand', undone_at::text, survivor, absorbed "
							  "FROM cdp.profile_merges WHERE merge_id = $1 FOR UPDATE",
							  1, t3, v3, n3, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.profile_merges");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merge " INT64_FORMAT " does not exist", merge_id),
				 errhint("Merges are listed in cdp.profile_merges.")));
	row = SPI_tuptable->vals[0];
	rd = SPI_tuptable->tupdesc;
	{
		char	   *undone = SPI_getvalue(row, rd, 4);

		if (undone != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("merge " INT64_FORMAT " was already undone", merge_id),
					 errdetail("It was undone at %s.", undone)));
	}
	anchor_id = DatumGetInt64(SPI_getbinval(row, rd, 1, &isnull));
	identifier_id = isnull ? 0 : DatumGetInt64(SPI_getbinval(row, rd, 2, &isnull));
	if (isnull || profile_of(anchor_id) == 0 || profile_of(identifier_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("merge " INT64_FORMAT " cannot be undone: an identifier of its link no longer exists", merge_id)));
	by_hand = DatumGetBool(SPI_getbinval(row, rd, 3, &isnull));
	survivor = DatumGetInt64(SPI_getbinval(row, rd, 5, &isnull));
	absorbed = DatumGetInt64(SPI_getbinval(row, rd, 6, &isnull));

	/* the journal, then the decision every later stitching and rebuild honours */
	SPI_execute_with_args("UPDATE cdp.profile_merges SET undone_at = now() WHERE merge_id = $1",
						  1, t3, v3, n3, false, 0);
	if (by_hand)
		SPI_execute_with_args("UPDATE cdp.identity_overrides SET lifted_at = now() "
							  "WHERE action = 'merge' AND merge_id = $1 AND lifted_at IS NULL",
							  1, t3, v3, n3, false, 0);
	{
		Oid			t4[4] = {INT8OID, INT8OID, INT8OID, TEXTOID};
		Datum		v4[4] = {Int64GetDatum(merge_id), Int64GetDatum(anchor_id), Int64GetDatum(identifier_id), v3[1]};
		char		n4[4] = {' ', ' ', ' ', n3[1]};

		SPI_execute_with_args("INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, reason) "
							  "SELECT 'unmerge', $1, $2, $3, CASE WHEN is_called THEN last_value ELSE 0 END, $4 "
							  "FROM cdp.events_event_id_seq",
							  4, t4, v4, n4, false, 0);
	}
	r = rebuild(cause);
	{
		int64		pa = profile_of(anchor_id);
		int64		pi = profile_of(identifier_id);

		/* the survivor's side first: the link's anchor may have been absorbed */
		if (pi == survivor || pa == absorbed)
		{
			int64		x = pa;

			pa = pi;
			pi = x;
		}
		result[0] = Int64GetDatum(pa);
		result[1] = Int64GetDatum(pi);
	}
	result[2] = Int64GetDatum(r.changed);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}
