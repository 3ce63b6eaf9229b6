/*
 * identity_store.c
 *	  The identity store: the one writer of the identity graph (see
 *	  identity_store.h for the tables it owns).
 *
 * Writers decide; the store writes.  Stitching, the rebuild, cdp.unmerge
 * and cdp.merge_profiles hand it a CdpIdentityChanges (or, for a merge by
 * hand, the pair), and it writes each table with one set-based statement,
 * in an order that keeps the invariants at every statement's end:
 *	- a profile id comes from cdp.profiles_profile_id_seq, an identifier id
 *	  from cdp.identifiers_identifier_id_seq, both handed out here;
 *	- merged_into always points at a live profile (no chains): a profile
 *	  merged away forwards to the survivor, and so does every profile that
 *	  forwarded to it (forward_profiles, relink_profiles);
 *	- an identifier always belongs to a live profile;
 *	- a pair refused before is not a new conflict.
 * Features that must follow merges, moves and new profiles (a profile
 * store, consent carry-over, erasure) hook in here.
 *
 * Callers hold the stitching lock (cdp_store_lock) and an SPI connection.
 */
#include "identity.h"
#include "identity_store.h"
#include "profile_store.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(cdp_store_hand_merge);
PG_FUNCTION_INFO_V1(cdp_store_forget_anchors);
PG_FUNCTION_INFO_V1(cdp_store_forget_profiles);

/* Grows the array of a CDP_ROWS (see CDP_PUSH). */
void
cdp_rows_grow(void **v, int *max, Size size)
{
	*max = *max > 0 ? *max * 2 : 64;
	*v = *v == NULL ? palloc_extended(size * *max, MCXT_ALLOC_HUGE)
		: repalloc_huge(*v, size * *max);
}

/* An int64 field (at offset) of n rows of size bytes, as an array datum. */
static Datum
int64_column(const void *rows, int n, Size size, Size offset, Oid type)
{
	int64	   *v = palloc(sizeof(int64) * (n > 0 ? n : 1));
	int			i;

	for (i = 0; i < n; i++)
		v[i] = *(const int64 *) ((const char *) rows + i * size + offset);
	return cdp_int64_array(v, n, type);
}

/* A C string field (at offset) of n rows of size bytes, as a text[] datum. */
static Datum
text_column(const void *rows, int n, Size size, Size offset)
{
	char	  **v = palloc(sizeof(char *) * (n > 0 ? n : 1));
	int			i;

	for (i = 0; i < n; i++)
		v[i] = *(char *const *) ((const char *) rows + i * size + offset);
	return cdp_text_array(v, n);
}

/* Field f of the rows of CDP_ROWS l of type T, as a bigint[] datum. */
#define INT8_COLUMN(l, T, f) int64_column((l).v, (l).n, sizeof(T), offsetof(T, f), INT8OID)

/* A column of a set-based statement: a field of the rows, and its type. */
typedef struct Column
{
	Oid			type;			/* INT8OID, TIMESTAMPTZOID or TEXTOID */
	Size		offset;
} Column;

#define MAX_COLUMNS 8

/*
 * Runs sql with one array argument per column, taken from n rows of size
 * bytes (nothing when there are no rows).
 */
static void
write_rows(const void *rows, int n, Size size, const Column *cols, int ncols, const char *sql,
		   int expect)
{
	Oid			types[MAX_COLUMNS];
	Datum		args[MAX_COLUMNS];
	int			k;

	Assert(ncols <= MAX_COLUMNS);
	if (n == 0)
		return;
	for (k = 0; k < ncols; k++)
	{
		if (cols[k].type == TEXTOID)
		{
			types[k] = TEXTARRAYOID;
			args[k] = text_column(rows, n, size, cols[k].offset);
		}
		else
		{
			types[k] = cols[k].type == INT8OID ? INT8ARRAYOID : TIMESTAMPTZARRAYOID;
			args[k] = int64_column(rows, n, size, cols[k].offset, cols[k].type);
		}
	}
	cdp_spi_run(sql, ncols, types, args, expect);
}

#define WRITE_ROWS(l, cols, sql, expect) \
	write_rows((l).v, (l).n, sizeof(*(l).v), cols, lengthof(cols), sql, expect)

/* Takes the stitching lock (held until the transaction ends). */
void
cdp_store_lock(void)
{
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(STITCH_LOCK_KEY1),
						Int32GetDatum(STITCH_LOCK_KEY2));
}

/* n ids from a sequence, ascending (copied out of SPI's memory). */
static int64 *
next_ids(const char *sql, int n)
{
	int64	   *ids = palloc(sizeof(int64) * (n > 0 ? n : 1));
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(n)};
	uint64		i;

	if (n == 0)
		return ids;
	cdp_spi_run(sql, 1, types, args, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		ids[i] = cdp_spi_int64(i, 1);
	return ids;
}

/* n new profile ids, ascending. */
int64 *
cdp_store_profile_ids(int n)
{
	return next_ids("SELECT pg_catalog.nextval('cdp.profiles_profile_id_seq') "
					"FROM pg_catalog.generate_series(1, $1)", n);
}

/* n new identifier ids, ascending. */
int64 *
cdp_store_identifier_ids(int n)
{
	return next_ids("SELECT pg_catalog.nextval('cdp.identifiers_identifier_id_seq') "
					"FROM pg_catalog.generate_series(1, $1)", n);
}

/* New profiles, with a forwarding pointer when merged in the same batch. */
static void
write_profiles(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpNewProfile, profile_id)},
		{INT8OID, offsetof(CdpNewProfile, first_event_id)},
		{INT8OID, offsetof(CdpNewProfile, merged_into)}};

	WRITE_ROWS(c->profiles, cols,
			   "INSERT INTO cdp.profiles (profile_id, first_event_id, merged_into, merged_at) "
			   "SELECT p, nullif(e, 0), nullif(m, 0), CASE WHEN m <> 0 THEN pg_catalog.now() END "
			   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(p, e, m)",
			   SPI_OK_INSERT);
}

/*
 * Stored profiles merged away: each forwards to its survivor, so do the
 * profiles that forwarded to it, and its identifiers move there.
 */
static void
forward_profiles(Datum from, Datum to)
{
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2] = {from, to};

	/* "= ANY ($1)" finds the rows through the index first */
	cdp_spi_run("UPDATE cdp.profiles p SET merged_into = m.t, merged_at = pg_catalog.now() "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(f, t) "
				"WHERE p.profile_id = ANY ($1) AND p.profile_id = m.f",
				2, types, args, SPI_OK_UPDATE);
	cdp_spi_run("UPDATE cdp.profiles p SET merged_into = m.t "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(f, t) "
				"WHERE p.merged_into = ANY ($1) AND p.merged_into = m.f",
				2, types, args, SPI_OK_UPDATE);
	cdp_spi_run("UPDATE cdp.identifiers i SET profile_id = m.t "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(f, t) "
				"WHERE i.profile_id = ANY ($1) AND i.profile_id = m.f",
				2, types, args, SPI_OK_UPDATE);
}

/* New identifiers, and the first anchors of stored ones. */
static void
write_identifiers(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpNewIdentifier, identifier_id)},
		{TEXTOID, offsetof(CdpNewIdentifier, kind)},
		{TEXTOID, offsetof(CdpNewIdentifier, value)},
		{INT8OID, offsetof(CdpNewIdentifier, profile_id)},
		{TIMESTAMPTZOID, offsetof(CdpNewIdentifier, first_seen)},
		{INT8OID, offsetof(CdpNewIdentifier, first_event_id)},
		{INT8OID, offsetof(CdpNewIdentifier, first_anchor_event_id)}};
	static const Column anchor_cols[] = {
		{INT8OID, offsetof(CdpFirstAnchor, identifier_id)},
		{INT8OID, offsetof(CdpFirstAnchor, event_id)}};

	WRITE_ROWS(c->identifiers, cols,
			   "INSERT INTO cdp.identifiers (identifier_id, kind, value, profile_id, first_seen, "
			   "first_event_id, first_anchor_event_id, initial_profile_id) "
			   "SELECT i, k, v, p, s, f, nullif(a, 0), p "
			   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
			   "pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7)) "
			   "AS u(i, k, v, p, s, f, a)",
			   SPI_OK_INSERT);
	WRITE_ROWS(c->first_anchors, anchor_cols,
			   "UPDATE cdp.identifiers i SET first_anchor_event_id = m.a "
			   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(i, a) "
			   "WHERE i.identifier_id = ANY ($1) AND i.identifier_id = m.i "
			   "AND i.first_anchor_event_id IS NULL",
			   SPI_OK_UPDATE);
}

/*
 * After identifiers moved (from -> to, in identifier order): profiles that
 * hold identifiers again are live, a profile left empty forwards to where
 * its first identifier went, one that forwarded to a profile identifiers
 * left forwards to where its first identifier is now, and chains end at
 * live profiles.
 */
static void
relink_profiles(Datum from, Datum to)
{
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2] = {from, to};
	int			round;

	cdp_spi_run("UPDATE cdp.profiles p SET merged_into = NULL, merged_at = NULL "
				"WHERE merged_into IS NOT NULL "
				"AND EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)",
				0, NULL, NULL, SPI_OK_UPDATE);
	cdp_spi_run("UPDATE cdp.profiles p SET merged_into = f.t, merged_at = pg_catalog.now() "
				"FROM (SELECT DISTINCT ON (f) f, t FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) "
				"WITH ORDINALITY AS u(f, t, o) ORDER BY f, o) f "
				"WHERE p.profile_id = f.f AND p.merged_into IS NULL "
				"AND NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)",
				2, types, args, SPI_OK_UPDATE);
	cdp_spi_run("UPDATE cdp.profiles p SET merged_into = f.now_in "
				"FROM (SELECT DISTINCT ON (i.initial_profile_id) i.initial_profile_id AS born, "
				"i.profile_id AS now_in FROM cdp.identifiers i ORDER BY i.initial_profile_id, i.identifier_id) f "
				"WHERE p.merged_into = ANY ($1) AND p.profile_id = f.born AND p.merged_into <> f.now_in",
				1, types, args, SPI_OK_UPDATE);
	/* each round halves the longest forwarding chain: a few rounds, or a cycle */
	for (round = 0;
		 cdp_spi_run("UPDATE cdp.profiles p SET merged_into = q.merged_into "
					 "FROM cdp.profiles q WHERE p.merged_into = q.profile_id AND q.merged_into IS NOT NULL",
					 0, NULL, NULL, SPI_OK_UPDATE) > 0;
		 round++)
	{
		if (round >= 64)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("cdp.profiles.merged_into forms a cycle"),
					 errhint("Run SELECT cdp.rebuild_identities(); to derive the profiles again from the events.")));
		CHECK_FOR_INTERRUPTS();
	}
}

/* Identifiers that change profile, journaled with their cause. */
static void
write_moves(const CdpIdentityChanges *c)
{
	Oid			types[4] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTOID};
	Datum		args[4];

	if (c->moves.n == 0)
		return;
	args[0] = INT8_COLUMN(c->moves, CdpMove, identifier_id);
	args[1] = INT8_COLUMN(c->moves, CdpMove, to_profile);
	args[2] = INT8_COLUMN(c->moves, CdpMove, from_profile);
	args[3] = CStringGetTextDatum(c->move_cause);
	cdp_spi_run("UPDATE cdp.identifiers i SET profile_id = u.p "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(i, p) "
				"WHERE i.identifier_id = u.i",
				2, types, args, SPI_OK_UPDATE);
	cdp_spi_run("INSERT INTO cdp.identifier_moves (identifier_id, from_profile, to_profile, cause) "
				"SELECT u.i, u.o, u.p, $4 "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(i, p, o)",
				4, types, args, SPI_OK_INSERT);
	relink_profiles(args[2], args[1]);
}

/* Links refused by the rules; a pair refused before is not a new conflict. */
static void
write_conflicts(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpConflictRow, event_id)},
		{INT8OID, offsetof(CdpConflictRow, anchor_id)},
		{INT8OID, offsetof(CdpConflictRow, identifier_id)},
		{INT8OID, offsetof(CdpConflictRow, profile_id)},
		{INT8OID, offsetof(CdpConflictRow, other_profile)},
		{TEXTOID, offsetof(CdpConflictRow, kind)},
		{TEXTOID, offsetof(CdpConflictRow, reason)}};

	WRITE_ROWS(c->conflicts, cols,
			   "INSERT INTO cdp.identity_conflicts (event_id, anchor_id, identifier_id, profile_id, "
			   "other_profile, kind, reason) "
			   "SELECT u.* FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
			   "pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7)) "
			   "AS u(e, a, i, p, o, k, r) "
			   "WHERE NOT EXISTS (SELECT FROM cdp.identity_links l WHERE l.anchor_id = u.a AND l.identifier_id = u.i)",
			   SPI_OK_INSERT);
}

/* Merges by the rules, journaled. */
static void
write_merges(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpMergeRow, survivor)},
		{INT8OID, offsetof(CdpMergeRow, absorbed)},
		{INT8OID, offsetof(CdpMergeRow, anchor_id)},
		{INT8OID, offsetof(CdpMergeRow, identifier_id)},
		{INT8OID, offsetof(CdpMergeRow, event_id)}};

	WRITE_ROWS(c->merges, cols,
			   "INSERT INTO cdp.profile_merges (survivor, absorbed, anchor_id, identifier_id, event_id, method) "
			   "SELECT s, a, x, i, e, 'rule' FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			   "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)) AS u(s, a, x, i, e)",
			   SPI_OK_INSERT);
}

/* Pairs of identifiers seen together (the first event of each). */
static void
write_links(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpLinkRow, anchor_id)},
		{INT8OID, offsetof(CdpLinkRow, identifier_id)},
		{INT8OID, offsetof(CdpLinkRow, event_id)},
		{INT8OID, offsetof(CdpLinkRow, position)}};

	WRITE_ROWS(c->links, cols,
			   "INSERT INTO cdp.identity_links (anchor_id, identifier_id, event_id, position) "
			   "SELECT a, i, e, p FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			   "pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(a, i, e, p) "
			   "ON CONFLICT DO NOTHING",
			   SPI_OK_INSERT);
}

/* Each event's anchor, and the batch for the work that follows stitching. */
static void
write_anchors(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpEventAnchor, event_id)},
		{TIMESTAMPTZOID, offsetof(CdpEventAnchor, occurred_at)},
		{INT8OID, offsetof(CdpEventAnchor, anchor_id)}};
	Oid			types[3] = {INT8OID, INT8OID, INT4OID};
	Datum		args[3];
	int64		batch_id;

	if (c->anchors.n == 0)
		return;
	args[0] = Int64GetDatum(c->anchors.v[0].event_id);
	args[1] = Int64GetDatum(c->anchors.v[c->anchors.n - 1].event_id);
	args[2] = Int32GetDatum(c->anchors.n);
	cdp_spi_run("INSERT INTO cdp.stitch_batches (first_event_id, last_event_id, events) VALUES ($1, $2, $3) "
				"RETURNING batch_id", 3, types, args, SPI_OK_INSERT_RETURNING);
	batch_id = cdp_spi_int64(0, 1);
	/*
	 * Under the 0.1.0 schema (not updated yet) anchors have no batch: the
	 * column comes with the profile store, in the same update.
	 */
	WRITE_ROWS(c->anchors, cols,
			   cdp_store_installed()
			   ? psprintf("INSERT INTO cdp.event_anchors (event_id, occurred_at, anchor_id, batch_id) "
						  "SELECT *, " INT64_FORMAT "::bigint FROM ROWS FROM (pg_catalog.unnest($1), "
						  "pg_catalog.unnest($2), pg_catalog.unnest($3))", batch_id)
			   : "INSERT INTO cdp.event_anchors (event_id, occurred_at, anchor_id) "
			   "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
			   SPI_OK_INSERT);
}

/* Identifiers of events that were left out, with why. */
static void
write_rejections(const CdpIdentityChanges *c)
{
	static const Column cols[] = {
		{INT8OID, offsetof(CdpRejectionRow, event_id)},
		{TEXTOID, offsetof(CdpRejectionRow, kind)},
		{TEXTOID, offsetof(CdpRejectionRow, value)},
		{TEXTOID, offsetof(CdpRejectionRow, reason)}};

	WRITE_ROWS(c->rejections, cols,
			   "INSERT INTO cdp.identifier_rejections (event_id, kind, value, reason) "
			   "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			   "pg_catalog.unnest($3), pg_catalog.unnest($4))",
			   SPI_OK_INSERT);
}

/* Writes the changes, inside an SPI connection, under the stitching lock. */
void
cdp_store_write(const CdpIdentityChanges *c)
{
	write_profiles(c);
	if (c->forwards.n > 0)
		forward_profiles(INT8_COLUMN(c->forwards, CdpForward, from),
						 INT8_COLUMN(c->forwards, CdpForward, to));
	write_identifiers(c);
	write_moves(c);
	write_conflicts(c);
	write_merges(c);
	write_links(c);
	write_anchors(c);
	write_rejections(c);
}

/* Marks a merge of the journal undone (cdp.unmerge). */
void
cdp_store_undo_merge(int64 merge_id)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(merge_id)};

	cdp_spi_run("UPDATE cdp.profile_merges SET undone_at = pg_catalog.now() WHERE merge_id = $1",
				1, types, args, SPI_OK_UPDATE);
}

/*
 * cdp.store_hand_merge(survivor, absorbed, anchor_id, identifier_id,
 * reason): the writes of cdp.merge_profiles, which has checked the merge
 * and holds the stitching lock: journals it and forwards absorbed to
 * survivor; returns the merge_id.
 */
Datum
cdp_store_hand_merge(PG_FUNCTION_ARGS)
{
	int64		survivor = PG_GETARG_INT64(0);
	int64		absorbed = PG_GETARG_INT64(1);
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		args[5];
	int64		merge_id;

	args[0] = Int64GetDatum(survivor);
	args[1] = Int64GetDatum(absorbed);
	args[2] = PG_GETARG_DATUM(2);
	args[3] = PG_GETARG_DATUM(3);
	args[4] = PG_GETARG_DATUM(4);
	cdp_spi_connect();
	cdp_store_lock();
	/* cdp.merge_profiles checked these; a direct call must not corrupt the graph */
	if (survivor == absorbed ||
		cdp_spi_run("SELECT FROM cdp.profiles WHERE profile_id IN ($1, $2) AND merged_into IS NULL",
					2, types, args, SPI_OK_SELECT) != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot merge profile " INT64_FORMAT " into " INT64_FORMAT ": two distinct live profiles are needed",
						absorbed, survivor),
				 errhint("Merge profiles with cdp.merge_profiles.")));
	cdp_spi_run("INSERT INTO cdp.profile_merges (survivor, absorbed, anchor_id, identifier_id, method, reason) "
				"VALUES ($1, $2, $3, $4, 'hand', $5) RETURNING merge_id",
				5, types, args, SPI_OK_INSERT_RETURNING);
	merge_id = cdp_spi_int64(0, 1);
	forward_profiles(cdp_int64_array(&absorbed, 1, INT8OID), cdp_int64_array(&survivor, 1, INT8OID));
	cdp_spi_finish();
	PG_RETURN_INT64(merge_id);
}

/*
 * cdp.store_forget_anchors(from_time, to_time): the anchors of the events of
 * [from_time, to_time), for cdp.drop_partitions once it has dropped their
 * partition; returns how many.  The identifiers and links stay: they are
 * what the customer was known by, not the events.
 */
Datum
cdp_store_forget_anchors(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
	uint64		n;

	cdp_spi_connect();
	cdp_store_lock();
	n = cdp_spi_run("DELETE FROM cdp.event_anchors WHERE occurred_at >= $1 AND occurred_at < $2",
					2, types, args, SPI_OK_DELETE);
	cdp_spi_finish();
	PG_RETURN_INT64((int64) n);
}

/*
 * cdp.store_forget_profiles(profiles, events): erasure (cdp.forget) of the
 * identity graph of a person: the identifiers of these profiles and
 * everything that names them or the profiles (links, anchors, conflicts,
 * overrides, moves, merges), and the rejected identifiers of these events
 * or of the person's values.  Returns the rows deleted per table, as
 * jsonb.  Takes the stitching lock.
 */
Datum
cdp_store_forget_profiles(PG_FUNCTION_ARGS)
{
	static const char *const steps[][2] = {
		{"identifier_rejections", "DELETE FROM cdp.identifier_rejections r WHERE r.event_id = ANY ($2) "
		 "OR (r.kind, r.value) IN (SELECT i.kind, i.value FROM cdp.identifiers i WHERE i.profile_id = ANY ($1))"},
		{"event_anchors", "DELETE FROM cdp.event_anchors a WHERE a.event_id = ANY ($2) "
		 "OR a.anchor_id IN (SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY ($1))"},
		{"identity_links", "DELETE FROM cdp.identity_links l USING cdp.identifiers i "
		 "WHERE i.profile_id = ANY ($1) AND (l.anchor_id = i.identifier_id OR l.identifier_id = i.identifier_id)"},
		{"identity_conflicts", "DELETE FROM cdp.identity_conflicts c WHERE c.profile_id = ANY ($1) OR c.other_profile = ANY ($1) "
		 "OR c.identifier_id IN (SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY ($1)) "
		 "OR c.anchor_id IN (SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY ($1))"},
		{"identity_overrides", "DELETE FROM cdp.identity_overrides o USING cdp.identifiers i "
		 "WHERE i.profile_id = ANY ($1) AND (o.identifier_a = i.identifier_id OR o.identifier_b = i.identifier_id)"},
		{"identifier_moves", "DELETE FROM cdp.identifier_moves m WHERE m.from_profile = ANY ($1) OR m.to_profile = ANY ($1) "
		 "OR m.identifier_id IN (SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY ($1))"},
		{"profile_merges", "DELETE FROM cdp.profile_merges m WHERE m.survivor = ANY ($1) OR m.absorbed = ANY ($1)"},
		{"identifiers", "DELETE FROM cdp.identifiers i WHERE i.profile_id = ANY ($1)"},
		{"profiles", "DELETE FROM cdp.profiles p WHERE p.profile_id = ANY ($1)"},
	};
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
	StringInfoData out;
	int			i;

	cdp_spi_connect();
	cdp_store_lock();
	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	for (i = 0; i < (int) lengthof(steps); i++)
	{
		uint64		n = cdp_spi_run(steps[i][1], 2, types, args, SPI_OK_DELETE);

		appendStringInfo(&out, "%s\"%s\": " UINT64_FORMAT, i > 0 ? ", " : "", steps[i][0], n);
	}
	appendStringInfoChar(&out, '}');
	cdp_spi_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
