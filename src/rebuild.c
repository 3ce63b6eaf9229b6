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
 * Profile ids stay stable: each profile of the result takes the oldest
 * stored profile id among its identifiers, unless an older part of a split
 * profile took it; the rest get new ids, and stored profiles no longer used
 * forward to the profile that now holds their first identifier.
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

/* A candidate stable id for a profile of the result. */
typedef struct Claim
{
	int64		old_id;
	int64		label;
} Claim;

static int
compare_claim(const void *a, const void *b)
{
	const Claim *x = a;
	const Claim *y = b;

	if (x->old_id != y->old_id)
		return x->old_id < y->old_id ? -1 : 1;
	return x->label < y->label ? -1 : x->label > y->label;
}

/* cdp.rebuild_identities(): recomputes every profile; returns counts. */
Datum
cdp_rebuild_identities(PG_FUNCTION_ARGS)
{
	int			n_rules;
	const CdpRule *rules = cdp_identity_rules(&n_rules);
	int		   *limits = palloc(sizeof(int) * (n_rules > 0 ? n_rules : 1));
	unsigned char *merges = palloc(n_rules > 0 ? n_rules : 1);
	CdpIdGraph *g;
	int64	   *ids = NULL;
	int64	   *old_profile = NULL;
	bool	   *ruleless = NULL;
	int32		n_ids = 0;
	int32		max_ids = 0;
	Anchoring  *anch = NULL;
	int32		n_anch = 0;
	int32		a = 0;
	int64		n_links = 0;
	int64		changed = 0;
	int64		n_profiles;
	Portal		cur;
	TupleDesc	desc;
	Datum		result[4];
	bool		nulls[4] = {false, false, false, false};
	int			k;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
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

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
											"i.profile_id, coalesce(i.first_anchor_event_id, 0) FROM cdp.identifiers i "
											"ORDER BY 1",
											1, kt, kv, NULL, true, 0);
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

		/* 2. links in event order, each event's anchors first */
		cur = SPI_cursor_open_with_args(NULL, "SELECT anchor_id, identifier_id, event_id "
										"FROM cdp.identity_links ORDER BY event_id, position",
										0, NULL, NULL, NULL, true, 0);
		for (;;)
		{
			uint64		r;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(cur, true, FETCH);
			if (SPI_processed == 0)
				break;
			for (r = 0; r < SPI_processed; r++)
			{
				HeapTuple	t = SPI_tuptable->vals[r];
				TupleDesc	d = SPI_tuptable->tupdesc;
				bool		isnull;
				int32		an = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 1, &isnull)));
				int32		on = node_of(ids, n_ids, DatumGetInt64(SPI_getbinval(t, d, 2, &isnull)));
				int64		ev = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));

				while (a < n_anch && anch[a].event_id <= ev)
					cdp_idgraph_ensure_profile(g, anch[a++].node);
				if (an < 0 || on < 0 || ruleless[an] || ruleless[on])
					continue;	/* deleted by hand, or its kind lost its rule */
				cdp_idgraph_ensure_profile(g, an);
				(void) cdp_idgraph_link(g, an, on);
				n_links++;
			}
			SPI_freetuptable(SPI_tuptable);
			if (n_links % 1000000 < FETCH)
				ereport(NOTICE, (errmsg("rebuild: " INT64_FORMAT " links replayed", n_links)));
		}
		SPI_cursor_close(cur);
		while (a < n_anch)
			cdp_idgraph_ensure_profile(g, anch[a++].node);

		/* 3. stable ids: each result profile claims its oldest stored id */
		{
			int64		n_labels = rebuild_next_label;
			int64	   *best = palloc_extended(sizeof(int64) * (n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			int64	   *final = palloc_extended(sizeof(int64) * (n_labels + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			Claim	   *claims = palloc_extended(sizeof(Claim) * (n_labels + 1), MCXT_ALLOC_HUGE);
			int64		n_claims = 0;
			int64		n_new = 0;
			int64		i;
			int64	   *upd_id = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *upd_prof = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *upd_old = palloc_extended(sizeof(int64) * (n_ids + 1), MCXT_ALLOC_HUGE);
			int64	   *new_ids;
			Oid			types2[2] = {INT8ARRAYOID, INT8ARRAYOID};

			for (i = 0; i < n_ids; i++)
			{
				int64		l = cdp_idgraph_profile(g, (int32) i);

				if (best[l] == 0 || old_profile[i] < best[l])
					best[l] = old_profile[i];
			}
			for (i = 1; i <= n_labels; i++)
				if (best[i] != 0)
				{
					claims[n_claims].old_id = best[i];
					claims[n_claims].label = i;
					n_claims++;
				}
			qsort(claims, n_claims, sizeof(Claim), compare_claim);
			for (i = 0; i < n_claims; i++)
			{
				if (i > 0 && claims[i].old_id == claims[i - 1].old_id)
					n_new++;	/* a later part of a split profile */
				else
					final[claims[i].label] = claims[i].old_id;
			}
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
					if (best[i] != 0 && final[i] == 0)
						final[i] = new_ids[j++];
			}
			n_profiles = n_claims;

			/* identifiers whose profile changed */
			for (i = 0; i < n_ids; i++)
			{
				int64		p = final[cdp_idgraph_profile(g, (int32) i)];

				if (p != old_profile[i])
				{
					upd_id[changed] = ids[i];
					upd_prof[changed] = p;
					upd_old[changed] = old_profile[i];
					changed++;
				}
			}
			if (n_new > 0)
			{
				Oid			t1[1] = {INT8ARRAYOID};
				Datum		v1[1] = {cdp_int64_array(new_ids, (int) n_new, INT8OID)};

				SPI_execute_with_args("INSERT INTO cdp.profiles (profile_id) SELECT unnest($1)",
									  1, t1, v1, NULL, false, 0);
			}
			if (changed > 0)
			{
				Datum		v2[2] = {cdp_int64_array(upd_id, (int) changed, INT8OID), cdp_int64_array(upd_prof, (int) changed, INT8OID)};

				if (SPI_execute_with_args("UPDATE cdp.identifiers i SET profile_id = u.p "
										  "FROM unnest($1, $2) AS u(i, p) WHERE i.identifier_id = u.i",
										  2, types2, v2, NULL, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "could not update cdp.identifiers");
			}

			/* live profiles: revive the reused ones, forward the others */
			if (changed > 0)
			{
				/* a profile an identifier left forwards to where it went */
				Datum		v2[2] = {cdp_int64_array(upd_old, (int) changed, INT8OID), cdp_int64_array(upd_prof, (int) changed, INT8OID)};

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
	SPI_finish();

	result[0] = Int64GetDatum(n_ids);
	result[1] = Int64GetDatum(n_links);
	result[2] = Int64GetDatum(n_profiles);
	result[3] = Int64GetDatum(changed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, nulls)));
}
