/*
 * identity.c
 *	  Glue of identity resolution: the rules and blocklist caches, identifier
 *	  normalization, the SQL normalizers and cdp.resolve.
 *
 * How identities are made (stitch.c, rebuild.c): stitching runs the greedy
 * algorithm of src/core/idgraph.c on the events of a batch in event_id
 * order, over a small graph loaded from the stored one: the identifiers the
 * batch carries and, for those already known, their profiles with their
 * counts per kind.  The rebuild (rebuild.c) replays the stored links with
 * the same graph algorithm, so both make the same decisions.  Both hand
 * what changed (new identifiers and profiles, merged profiles, moves,
 * links, the merge journal, conflicts, refused identifiers, each event's
 * anchor) to the identity store (identity_store.c), the one writer of the
 * graph.  Both build their graph with cdp_identity_graph, under the rules
 * cached here.
 *
 * Locking: stitching takes one transaction-level advisory lock, so
 * concurrent loaders stitch one after the other (their COPY work still runs
 * in parallel) and never see a half-written graph.  It is held until commit.
 *
 * Caches (per backend): the rules and the blocklist, dropped by relcache
 * invalidations that the statement triggers on their tables send.
 */
#include "cdp.h"
#include "event_rules.h"
#include "events.h"
#include "identity.h"
#include "idgraph.h"
#include "normalize.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(cdp_email_sql);
PG_FUNCTION_INFO_V1(cdp_phone_sql);
PG_FUNCTION_INFO_V1(cdp_check_identifier);
PG_FUNCTION_INFO_V1(cdp_resolve);


/* One entry of cdp.identifier_blocklist. */
typedef struct BlockEntry
{
	char	   *kind;			/* NULL: every kind */
	text	   *value;
	bool		is_pattern;
	char	   *reason;
} BlockEntry;

static MemoryContext config_cxt = NULL;
static bool config_valid = false;
static Oid	rules_relid = InvalidOid;
static Oid	blocklist_relid = InvalidOid;
static CdpRule *rules = NULL;		/* sorted by kind (C collation) */
static const char **rule_kinds = NULL;
static int	n_rules = 0;
static BlockEntry *blocklist = NULL;
static int	n_blocks = 0;

/* Whether an unmerge is in force (cdp.identity_overrides), cached apart. */
static Oid	overrides_relid = InvalidOid;
static bool unmerges_valid = false;
static bool has_unmerges = false;

/*
 * The tombstones of erased identifiers (cdp.forget): their keyed hashes,
 * cached with the key; stale when cdp.tombstones changes (its statement
 * trigger sends a relcache invalidation).
 */
#define TOMB_HEX 65
static MemoryContext tombs_cxt = NULL;
static HTAB *tombs = NULL;
static HTAB *tombs_quick = NULL;	/* their 64-bit hashes, tested first */
static uint64 tombs_seed = 0;
static bytea *tombs_key = NULL;
static long n_tombs = 0;
static bool tombs_valid = false;
static Oid	tombs_relid = InvalidOid;

/* Marks the configuration stale when one of its tables is invalidated. */
static void
config_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == tombs_relid)
		tombs_valid = false;
	if (relid == InvalidOid || relid == rules_relid || relid == blocklist_relid)
		config_valid = false;
	if (relid == InvalidOid || relid == overrides_relid)
		unmerges_valid = false;
}

/* Reads the rules and the blocklist if stale. */
static void
load_config(void)
{
	Oid			nsp;
	uint64		i;

	if (config_valid)
		return;
	if (config_cxt == NULL)
	{
		config_cxt = AllocSetContextCreate(TopMemoryContext, "cdp identity config",
										   ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(config_invalidated, (Datum) 0);
	}
	else
		MemoryContextReset(config_cxt);
	rules = NULL;
	rule_kinds = NULL;
	n_rules = 0;
	blocklist = NULL;
	n_blocks = 0;

	nsp = get_namespace_oid("cdp", false);
	rules_relid = get_relname_relid("identity_rules", nsp);
	blocklist_relid = get_relname_relid("identifier_blocklist", nsp);

	config_valid = true;		/* an invalidation while reading clears it */
	PG_TRY();
	{
		cdp_spi_connect();
		cdp_spi_read("SELECT kind, priority, max_per_profile, normalizer, merges "
					 "FROM cdp.identity_rules ORDER BY kind COLLATE \"C\"", 0, NULL, NULL, NULL);
		if (SPI_processed > CDP_IDGRAPH_MAX_KINDS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cdp.identity_rules has %d kinds, more than %d",
							(int) SPI_processed, CDP_IDGRAPH_MAX_KINDS)));
		rules = MemoryContextAllocZero(config_cxt, sizeof(CdpRule) * (SPI_processed + 1));
		rule_kinds = MemoryContextAllocZero(config_cxt, sizeof(char *) * (SPI_processed + 1));
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			char	   *norm = SPI_getvalue(t, d, 4);

			rules[i].kind = MemoryContextStrdup(config_cxt, SPI_getvalue(t, d, 1));
			rules[i].priority = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
			rules[i].limit = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
			rules[i].normalizer = strcmp(norm, "email") == 0 ? CDP_NORM_EMAIL :
				strcmp(norm, "phone") == 0 ? CDP_NORM_PHONE :
				strcmp(norm, "lower") == 0 ? CDP_NORM_LOWER : CDP_NORM_TRIM;
			rules[i].merges = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
			rule_kinds[i] = rules[i].kind;
		}
		n_rules = (int) SPI_processed;

		cdp_spi_read("SELECT kind, lower(value), is_pattern, reason "
					 "FROM cdp.identifier_blocklist ORDER BY entry_id", 0, NULL, NULL, NULL);
		blocklist = MemoryContextAllocZero(config_cxt, sizeof(BlockEntry) * (SPI_processed + 1));
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			char	   *kind = SPI_getvalue(t, d, 1);
			bool		isnull;
			MemoryContext old = MemoryContextSwitchTo(config_cxt);

			blocklist[i].kind = kind ? pstrdup(kind) : NULL;
			blocklist[i].value = cstring_to_text(SPI_getvalue(t, d, 2));
			blocklist[i].is_pattern = DatumGetBool(SPI_getbinval(t, d, 3, &isnull));
			blocklist[i].reason = pstrdup(SPI_getvalue(t, d, 4));
			MemoryContextSwitchTo(old);
		}
		n_blocks = (int) SPI_processed;
		cdp_spi_finish();
	}
	PG_CATCH();
	{
		config_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Whether some pair of identifiers is kept apart by an unmerge in force, so
 * that stitching only looks the pairs up when there are any.  Cached apart
 * from the rules (which a batch holds on to), under the same invalidation.
 */
bool
cdp_identity_has_unmerges(void)
{
	load_config();				/* registers the invalidation callback */
	if (!unmerges_valid)
	{
		overrides_relid = get_relname_relid("identity_overrides", get_namespace_oid("cdp", false));
		unmerges_valid = true;	/* an invalidation while reading clears it */
		PG_TRY();
		{
			bool		isnull;

			cdp_spi_connect();
			cdp_spi_read("SELECT EXISTS (SELECT FROM cdp.identity_overrides "
						 "WHERE action = 'unmerge' AND lifted_at IS NULL)", 0, NULL, NULL, NULL);
			has_unmerges = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			cdp_spi_finish();
		}
		PG_CATCH();
		{
			unmerges_valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return has_unmerges;
}

/* Rules sorted by kind, loaded if stale. */
const CdpRule *
cdp_identity_rules(int *n)
{
	load_config();
	*n = n_rules;
	return rules;
}

/* Frees a graph when its memory context goes (a reset callback). */
static void
free_graph(void *arg)
{
	cdp_idgraph_free((CdpIdGraph *) arg);
}

/*
 * An empty graph under the current rules, freed with the current memory
 * context (also when an error unwinds it).
 */
CdpIdGraph *
cdp_identity_graph(CdpNewLabel new_label, void *arg)
{
	int			n;
	const CdpRule *r = cdp_identity_rules(&n);
	int		   *limits = palloc(sizeof(int) * (n > 0 ? n : 1));
	unsigned char *merges = palloc(n > 0 ? n : 1);
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	CdpIdGraph *g;
	int			k;

	for (k = 0; k < n; k++)
	{
		limits[k] = r[k].limit;
		merges[k] = r[k].merges;
	}
	g = cdp_idgraph_create(n, limits, merges, new_label, arg);
	if (g == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	cb->func = free_graph;
	cb->arg = g;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return g;
}

static char *normalize_value(const CdpRule *rule, const char *raw, int len, const char **why);

/* Reads the tombstones and their key (as the owner of cdp.events: a loader
 * may not read them). */
static void
read_tombstones(void)
{
	HASHCTL		ctl;
	uint64		i;

	cdp_spi_connect();
	cdp_spi_read("SELECT k.key, t.hash, t.quick, cdp.erasure_seed(k.key) "
				 "FROM cdp.tombstones t CROSS JOIN cdp.erasure_key k",
				 0, NULL, NULL, NULL);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = TOMB_HEX;
	ctl.entrysize = TOMB_HEX;
	ctl.hcxt = tombs_cxt;
	tombs = hash_create("cdp tombstones", Max(SPI_processed, 16), &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = tombs_cxt;
	tombs_quick = hash_create("cdp tombstones quick", Max(SPI_processed, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		key = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		char	   *hex = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char		entry[TOMB_HEX];
		uint64		quick = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));

		if (tombs_key == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(tombs_cxt);

			tombs_key = DatumGetByteaPCopy(key);
			MemoryContextSwitchTo(old);
		}
		tombs_seed = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
		(void) hash_search(tombs_quick, &quick, HASH_ENTER, NULL);
		strlcpy(entry, hex, sizeof(entry));
		(void) hash_search(tombs, entry, HASH_ENTER, NULL);
		n_tombs++;
	}
	cdp_spi_finish();
}

/* Reads the tombstones and their key if stale. */
static void
load_tombstones(void)
{
	load_config();				/* registers the invalidation callback */
	if (tombs_valid)
		return;
	if (tombs_cxt == NULL)
		tombs_cxt = AllocSetContextCreate(TopMemoryContext, "cdp tombstones", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(tombs_cxt);
	tombs = NULL;
	tombs_quick = NULL;
	tombs_key = NULL;
	n_tombs = 0;
	tombs_relid = get_relname_relid("tombstones", get_namespace_oid("cdp", false));
	tombs_valid = true;			/* an invalidation while reading clears it */
	if (!OidIsValid(tombs_relid))
		return;					/* a schema not updated yet */
	PG_TRY();
	{
		cdp_as_events_owner(read_tombstones);
	}
	PG_CATCH();
	{
		tombs_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Whether an identifier (kind, raw value) was erased by cdp.forget: its
 * normalized value's keyed SHA-256 (as cdp.erasure_hash computes it) is a
 * tombstone.  Costs nothing while there is no tombstone.
 */
bool
cdp_identity_erased(const char *kind, int kind_len, const char *raw, int len)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[TOMB_HEX];
	const char *why;
	char	   *norm;
	int			r;
	int			i;
	bool		found;

	load_tombstones();
	if (n_tombs == 0 || tombs_key == NULL)
		return false;
	r = cdp_identity_find_rule(kind, kind_len);
	if (r < 0)
		return false;
	norm = normalize_value(&rules[r], raw, len, &why);	/* (a blocked value was never in the graph) */
	if (norm == NULL)
		return false;
	{
		/* the 64-bit hash first: the SHA-256 only for a likely match */
		StringInfoData buf;
		uint64		quick;

		initStringInfo(&buf);
		appendBinaryStringInfo(&buf, kind, kind_len);
		appendStringInfoChar(&buf, ':');
		appendStringInfoString(&buf, norm);
		quick = DatumGetUInt64(hash_any_extended((const unsigned char *) buf.data, buf.len, tombs_seed));
		pfree(buf.data);
		(void) hash_search(tombs_quick, &quick, HASH_FIND, &found);
		if (!found)
			return false;
	}
	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) VARDATA_ANY(tombs_key), VARSIZE_ANY_EXHDR(tombs_key)) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) kind, kind_len) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) ":", 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) norm, strlen(norm)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "cdp could not compute a SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	(void) hash_search(tombs, hex, HASH_FIND, &found);
	return found;
}

/* Index of the rule of a kind, or -1. */
int
cdp_identity_find_rule(const char *kind, int len)
{
	load_config();
	return cdp_find_name(rule_kinds, n_rules, kind, len);
}

/* The blocklist entry that a value (normalized or raw) matches, or NULL. */
static const BlockEntry *
blocked(const CdpRule *rule, const char *value)
{
	text	   *t = NULL;
	int			i;

	for (i = 0; i < n_blocks; i++)
	{
		const BlockEntry *b = &blocklist[i];

		if (b->kind != NULL && strcmp(b->kind, rule->kind) != 0)
			continue;
		if (!b->is_pattern)
		{
			if (strlen(value) == VARSIZE_ANY_EXHDR(b->value) &&
				memcmp(value, VARDATA_ANY(b->value), VARSIZE_ANY_EXHDR(b->value)) == 0)
				return b;
			continue;
		}
		if (t == NULL)
			t = cstring_to_text(value);
		if (DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
												 PointerGetDatum(t), PointerGetDatum(b->value))))
			return b;
	}
	return NULL;
}

/* Trimmed, lower-cased copy of a raw value, for the blocklist. */
static char *
raw_key(const char *s, int len)
{
	char	   *out;
	int			i;

	while (len > 0 && (unsigned char) s[0] <= ' ')
		s++, len--;
	while (len > 0 && (unsigned char) s[len - 1] <= ' ')
		len--;
	out = pnstrdup(s, len);
	for (i = 0; i < len; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] += 'a' - 'A';
	return out;
}

/* A value normalized by its rule's normalizer (no blocklist), or NULL. */
static char *
normalize_value(const CdpRule *rule, const char *raw, int len, const char **why)
{
	char		buf[CDP_MAX_NORMALIZED];
	int			n;

	switch (rule->normalizer)
	{
		case CDP_NORM_EMAIL:
			n = cdp_normalize_email(raw, len, buf, sizeof(buf), why);
			break;
		case CDP_NORM_PHONE:
			n = cdp_normalize_phone(raw, len, cdp_default_country, buf, sizeof(buf), why);
			break;
		default:
			n = cdp_normalize_trim(raw, len, buf, sizeof(buf), why);
			if (n >= 0 && rule->normalizer == CDP_NORM_LOWER)
			{
				int			i;

				for (i = 0; i < n; i++)
					if (buf[i] >= 'A' && buf[i] <= 'Z')
						buf[i] += 'a' - 'A';
			}
			break;
	}
	return n < 0 ? NULL : pnstrdup(buf, n);
}

/*
 * Normalizes one identifier under its rule: the normalized value, or NULL
 * with *why saying why it stays out of the graph.
 */
char *
cdp_identity_normalize(int rule_index, const char *raw, int len, const char **why)
{
	const CdpRule *rule = &rules[rule_index];
	const BlockEntry *b;
	char	   *value;

	/* junk as written, before it is read as anything */
	b = blocked(rule, raw_key(raw, len));
	if (b == NULL)
	{
		value = normalize_value(rule, raw, len, why);
		if (value == NULL)
			return NULL;
		b = blocked(rule, value);
	}
	if (b != NULL)
	{
		*why = psprintf("is blocked (%s)", b->reason);
		return NULL;
	}
	return value;
}

/* cdp.normalize_email(text): the normalized address, or NULL if invalid. */
Datum
cdp_email_sql(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char		buf[CDP_MAX_NORMALIZED];
	const char *why;
	int			n = cdp_normalize_email(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), buf, sizeof(buf), &why);

	if (n < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, n));
}

/*
 * cdp.normalize_phone(text, country): E.164, or NULL if invalid. Not STRICT:
 * a NULL country means cdp.default_country; a NULL phone gives NULL.
 */
Datum
cdp_phone_sql(PG_FUNCTION_ARGS)
{
	text	   *in;
	char	   *country;
	char		buf[CDP_MAX_NORMALIZED];
	const char *why;
	int			n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	in = PG_GETARG_TEXT_PP(0);
	country = PG_ARGISNULL(1) ? cdp_default_country : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (country == NULL)
		country = "";
	if (country[0] != '\0' && !cdp_phone_country_known(country))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown country \"%s\"", country),
				 errhint("Give an ISO 3166 alpha-2 code, such as GB, FR or US.")));
	n = cdp_normalize_phone(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), country, buf, sizeof(buf), &why);
	if (n < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, n));
}

/*
 * cdp.check_identifier(kind, value): the normalized value identity
 * resolution would use, or NULL and the reason it would leave it out.
 */
Datum
cdp_check_identifier(PG_FUNCTION_ARGS)
{
	text	   *kind = PG_GETARG_TEXT_PP(0);
	text	   *raw = PG_GETARG_TEXT_PP(1);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {true, true};
	const char *why = NULL;
	int			r;
	char	   *value = NULL;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	r = cdp_identity_find_rule(VARDATA_ANY(kind), VARSIZE_ANY_EXHDR(kind));
	if (r < 0)
		why = "has a kind without a rule in cdp.identity_rules";
	else
		value = cdp_identity_normalize(r, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &why);
	if (value != NULL)
	{
		values[0] = CStringGetTextDatum(value);
		nulls[0] = false;
	}
	else
	{
		values[1] = CStringGetTextDatum(why);
		nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* cdp.resolve(kind, value): the live profile holding an identifier, or NULL. */
Datum
cdp_resolve(PG_FUNCTION_ARGS)
{
	text	   *kind = PG_GETARG_TEXT_PP(0);
	text	   *raw = PG_GETARG_TEXT_PP(1);
	const char *why;
	char	   *value;
	int			r;
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};
	int64		profile = 0;
	bool		found = false;

	r = cdp_identity_find_rule(VARDATA_ANY(kind), VARSIZE_ANY_EXHDR(kind));
	if (r < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no identity rule for kind \"%s\"", text_to_cstring(kind)),
				 errhint("Kinds are the keys of cdp.identity_rules.")));
	value = cdp_identity_normalize(r, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &why);
	if (value == NULL)
		PG_RETURN_NULL();

	cdp_spi_connect();
	args[0] = CStringGetTextDatum(rules[r].kind);
	args[1] = CStringGetTextDatum(value);
	if (cdp_spi_read("SELECT profile_id FROM cdp.identifiers WHERE kind = $1 AND value = $2",
					 2, types, args, NULL) == 1)
	{
		bool		isnull;

		profile = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		found = !isnull;
	}
	cdp_spi_finish();
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(profile);
}
