/*
 * offers.c
 *	  PostgreSQL glue of the offers: eligibility rules (src/core/offer_rules.c)
 *	  and Thompson sampling (src/core/bandit.c) for the SQL of
 *	  src/sql/offers.sql.
 *
 * Rules are compiled once per backend and kept in a small cache keyed by
 * their bytes, so that a decision over a hundred offers parses only the
 * facts document of the person.
 */
#include "cdp.h"
#include "offer_rules.h"
#include "bandit.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "pgtime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <math.h>

PG_FUNCTION_INFO_V1(cdp_check_eligibility);
PG_FUNCTION_INFO_V1(cdp_eligible);
PG_FUNCTION_INFO_V1(cdp_rank_offers);
PG_FUNCTION_INFO_V1(cdp_evaluate_thompson_sql);
PG_FUNCTION_INFO_V1(cdp_known_time_zone);
PG_FUNCTION_INFO_V1(cdp_rate_interval);

#define REASON_LEN 512
#define RULE_CACHE_MAX 4096

/* Arena over palloc in a memory context. */
static void *
arena_alloc(void *ctx, size_t size)
{
	return MemoryContextAlloc((MemoryContext) ctx, size);
}

static CdpArena
arena_in(MemoryContext cxt)
{
	CdpArena	a = {arena_alloc, cxt};

	return a;
}

/* The text of a jsonb value. */
static char *
jsonb_text(Jsonb *jb, size_t *len)
{
	char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

	*len = strlen(s);
	return s;
}

/* Raises the error of a rule that does not compile, naming its path. */
static void
rule_error(const char *err)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid eligibility rule: %s", err),
			 errhint("A rule node is {\"all\": [...]}, {\"any\": [...]}, {\"not\": ...} or "
					 "{\"fact\": name, \"key\": ..., operator: operand}; the README lists the facts and operators.")));
}

/* The rule cache: compiled rules by the bytes of their jsonb. */
typedef struct CachedRule
{
	uint32		hash;			/* key */
	struct RuleEntry *entries;	/* the rules of this hash */
} CachedRule;

typedef struct RuleEntry
{
	struct RuleEntry *next;
	Size		len;
	char	   *bytes;
	CdpRule    *rule;
} RuleEntry;

static HTAB *rule_cache = NULL;
static MemoryContext rule_cxt = NULL;
static long rule_count = 0;

/* The compiled form of a rule (NULL jsonb: always holds, NULL returned). */
static CdpRule *
cached_rule(Jsonb *jb)
{
	uint32		h = hash_bytes((const unsigned char *) jb, VARSIZE(jb));
	CachedRule *c;
	RuleEntry  *e;
	bool		found;
	CdpArena	a;
	size_t		len;
	char	   *s;
	char		err[REASON_LEN];
	CdpRule    *rule;
	MemoryContext cxt;
	MemoryContext old;

	if (rule_cache == NULL || rule_count >= RULE_CACHE_MAX)
	{
		HASHCTL		ctl;

		if (rule_cxt == NULL)
			rule_cxt = AllocSetContextCreate(TopMemoryContext, "cdp offer rules", ALLOCSET_DEFAULT_SIZES);
		else
			MemoryContextReset(rule_cxt);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(CachedRule);
		ctl.hcxt = rule_cxt;
		rule_cache = hash_create("cdp offer rules", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		rule_count = 0;
	}
	c = hash_search(rule_cache, &h, HASH_ENTER, &found);
	if (!found)
		c->entries = NULL;
	for (e = c->entries; e != NULL; e = e->next)
		if (e->len == VARSIZE(jb) && memcmp(e->bytes, jb, e->len) == 0)
			return e->rule;
	/*
	 * Compiled in a context of its own, kept only when the rule compiles:
	 * an invalid rule leaves nothing behind.
	 */
	s = jsonb_text(jb, &len);
	cxt = AllocSetContextCreate(rule_cxt, "cdp offer rule", ALLOCSET_SMALL_SIZES);
	a = arena_in(cxt);
	rule = cdp_rule_compile(&a, s, len, "eligibility", err, sizeof(err));
	if (rule == NULL)
	{
		MemoryContextDelete(cxt);
		rule_error(err);
	}
	old = MemoryContextSwitchTo(cxt);
	e = palloc(sizeof(RuleEntry));
	e->len = VARSIZE(jb);
	e->bytes = palloc(e->len);
	memcpy(e->bytes, jb, e->len);
	e->rule = rule;
	MemoryContextSwitchTo(old);
	e->next = c->entries;
	c->entries = e;
	rule_count++;
	return e->rule;
}

/* cdp.check_eligibility(rule jsonb): true, or the error (the rule is kept compiled). */
Datum
cdp_check_eligibility(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		(void) cached_rule(PG_GETARG_JSONB_P(0));
	PG_RETURN_BOOL(true);
}

/* Parses a facts document (NULL: no facts). */
static CdpJson *
parse_facts(Jsonb *jb)
{
	CdpArena	a = arena_in(CurrentMemoryContext);
	char		err[REASON_LEN];
	size_t		len;
	char	   *s;
	CdpJson    *f;

	if (jb == NULL)
		return NULL;
	s = jsonb_text(jb, &len);
	f = cdp_json_parse(&a, s, len, err, sizeof(err));
	if (f == NULL)				/* valid JSON, but beyond the core's limits */
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cdp: facts document not readable: %s", err),
				 errhint("Facts are nested at most 64 deep, and their numbers fit a double precision.")));
	return f;
}

/* cdp.eligible(rule jsonb, facts jsonb, OUT eligible, OUT reason) */
Datum
cdp_eligible(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	char		why[REASON_LEN];
	CdpRule    *r;
	int			ok = 1;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cdp.eligible: composite result expected");
	desc = BlessTupleDesc(desc);
	if (!PG_ARGISNULL(0))
	{
		r = cached_rule(PG_GETARG_JSONB_P(0));
		ok = cdp_rule_eval(r, parse_facts(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)), why, sizeof(why));
	}
	values[0] = BoolGetDatum(ok);
	if (ok)
		nulls[1] = true;
	else
		values[1] = CStringGetTextDatum(why);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* The elements of a one-dimensional array argument, checked to have n of them. */
static int
array_arg(FunctionCallInfo fcinfo, int argno, Oid type, Datum **values, bool **nulls, int n_expected)
{
	ArrayType  *a;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (PG_ARGISNULL(argno))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("cdp: array argument %d must not be null", argno + 1)));
	a = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(a) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("cdp: array argument %d must have one dimension", argno + 1)));
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	deconstruct_array(a, type, typlen, typbyval, typalign, values, nulls, &n);
	if (n_expected >= 0 && n != n_expected)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("cdp: array argument %d has %d elements, %d expected", argno + 1, n, n_expected)));
	return n;
}

/* A float8 array element, which must be present. */
static double
float_at(Datum *v, bool *isnull, int i, const char *what)
{
	if (isnull[i])
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("cdp: %s of candidate %d is null", what, i + 1)));
	return DatumGetFloat8(v[i]);
}

/* A random seed when none is given: draws differ between calls. */
static uint64
fresh_seed(void)
{
	uint64		s;

	if (!pg_strong_random(&s, sizeof(s)))
		s = (uint64) GetCurrentTimestamp() ^ ((uint64) MyProcPid << 32);
	return s;
}

typedef struct Ranked
{
	int			i;
	double		score;
} Ranked;

static int
compare_ranked(const void *a, const void *b)
{
	const Ranked *x = a;
	const Ranked *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->i - y->i;
}

/*
 * cdp.rank_offers(facts, seed, draws, rules[], blocked[], fallback[],
 * alpha[], beta[], value[], cost[]): see src/sql/offers.sql.
 */
Datum
cdp_rank_offers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsi = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *rules, *blocked, *fallback, *alpha, *beta, *value, *cost;
	bool	   *rules_n, *blocked_n, *fallback_n, *alpha_n, *beta_n, *value_n, *cost_n;
	int			n, i, k, chosen, n_ranked = 0, draws;
	CdpJson    *facts;
	CdpArm	   *arms;
	char	  **reasons;
	double	   *sample, *score, action_prob = NAN;
	bool	   *eligible;
	bool		any_regular = false;
	Ranked	   *ranked;
	int		   *rank_of;
	CdpRng		rng;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(3))
		PG_RETURN_NULL();		/* no candidates */
	n = array_arg(fcinfo, 3, JSONBOID, &rules, &rules_n, -1);
	(void) array_arg(fcinfo, 4, TEXTOID, &blocked, &blocked_n, n);
	(void) array_arg(fcinfo, 5, BOOLOID, &fallback, &fallback_n, n);
	(void) array_arg(fcinfo, 6, FLOAT8OID, &alpha, &alpha_n, n);
	(void) array_arg(fcinfo, 7, FLOAT8OID, &beta, &beta_n, n);
	(void) array_arg(fcinfo, 8, FLOAT8OID, &value, &value_n, n);
	(void) array_arg(fcinfo, 9, FLOAT8OID, &cost, &cost_n, n);
	draws = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	facts = parse_facts(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));
	cdp_rng_seed(&rng, PG_ARGISNULL(1) ? fresh_seed() : (uint64) PG_GETARG_INT64(1));

	arms = palloc0(sizeof(CdpArm) * Max(n, 1));
	reasons = palloc0(sizeof(char *) * Max(n, 1));
	eligible = palloc0(sizeof(bool) * Max(n, 1));
	sample = palloc(sizeof(double) * Max(n, 1));
	score = palloc(sizeof(double) * Max(n, 1));
	ranked = palloc(sizeof(Ranked) * Max(n, 1));
	rank_of = palloc0(sizeof(int) * Max(n, 1));

	/* what may be chosen: its rule holds and nothing else forbids it */
	for (i = 0; i < n; i++)
	{
		char		why[REASON_LEN];

		CHECK_FOR_INTERRUPTS();
		if (!rules_n[i] && !cdp_rule_eval(cached_rule(DatumGetJsonbP(rules[i])), facts, why, sizeof(why)))
			reasons[i] = pstrdup(why);
		else if (!blocked_n[i])
			reasons[i] = TextDatumGetCString(blocked[i]);
		else
		{
			eligible[i] = true;
			any_regular |= fallback_n[i] || !DatumGetBool(fallback[i]);
		}
		arms[i].alpha = float_at(alpha, alpha_n, i, "alpha");
		arms[i].beta = float_at(beta, beta_n, i, "beta");
		arms[i].value = float_at(value, value_n, i, "value");
		arms[i].cost = float_at(cost, cost_n, i, "cost");
	}
	/* the fallbacks compete only when no other offer may be chosen */
	for (i = 0; i < n; i++)
		arms[i].eligible = eligible[i] &&
			(!any_regular || fallback_n[i] || !DatumGetBool(fallback[i]));
	chosen = cdp_thompson_choose(arms, n, &rng, draws, sample, score, &action_prob);
	if (chosen == CDP_BANDIT_EBADARG)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cdp: a candidate offer has an invalid posterior, value or cost"),
						errhint("alpha and beta must be positive (cdp.offer_prior_alpha, cdp.offer_prior_beta); value, weight and contact_cost finite.")));
	for (i = 0; i < n; i++)
		if (arms[i].eligible)
			ranked[n_ranked++] = (Ranked) {i, score[i]};
	qsort(ranked, n_ranked, sizeof(Ranked), compare_ranked);
	for (k = 0; k < n_ranked; k++)
		rank_of[ranked[k].i] = k + 1;

	for (k = 0; k < n; k++)
	{
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		int			rank = rank_of[k];

		i = k;
		values[0] = Int32GetDatum(i + 1);
		values[1] = BoolGetDatum(eligible[i]);
		if (reasons[i] != NULL)
			values[2] = CStringGetTextDatum(reasons[i]);
		else if (!arms[i].eligible)
			values[2] = CStringGetTextDatum("fallback: another offer may be chosen");
		else
			nulls[2] = true;
		if (arms[i].eligible)
		{
			values[3] = Float8GetDatum(sample[i]);
			values[4] = Float8GetDatum(score[i]);
			values[5] = Int32GetDatum(rank);
		}
		else
			nulls[3] = nulls[4] = nulls[5] = true;
		if (rank == 1 && !isnan(action_prob))
			values[6] = Float8GetDatum(action_prob);
		else
			nulls[6] = true;
		tuplestore_putvalues(rsi->setResult, rsi->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/*
 * cdp.evaluate_thompson(arms[], contexts[], rewards[], propensities[],
 * prior_alpha, prior_beta, draws, seed): replay, ipw and snipw rows.
 */
Datum
cdp_evaluate_thompson_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsi = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *arm, *ctx, *reward, *prop;
	bool	   *arm_n, *ctx_n, *reward_n, *prop_n;
	int			n, i, n_arms = 0, n_ctx = 0;
	CdpLogged  *rows;
	CdpEstimate est[3];
	const char *names[3] = {"thompson_replay", "thompson_ipw", "thompson_snipw"};
	double	   *scratch;

	InitMaterializedSRF(fcinfo, 0);
	n = array_arg(fcinfo, 0, INT4OID, &arm, &arm_n, -1);
	(void) array_arg(fcinfo, 1, INT4OID, &ctx, &ctx_n, n);
	(void) array_arg(fcinfo, 2, FLOAT8OID, &reward, &reward_n, n);
	(void) array_arg(fcinfo, 3, FLOAT8OID, &prop, &prop_n, n);
	rows = palloc(sizeof(CdpLogged) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (arm_n[i] || ctx_n[i] || reward_n[i] || prop_n[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("cdp.evaluate_thompson: logged row %d has a null", i + 1)));
		rows[i].arm = DatumGetInt32(arm[i]);
		rows[i].context = DatumGetInt32(ctx[i]);
		rows[i].reward = DatumGetFloat8(reward[i]);
		rows[i].propensity = DatumGetFloat8(prop[i]);
		if (rows[i].arm < 0 || rows[i].arm >= PG_INT32_MAX || rows[i].context < 0 || rows[i].context >= PG_INT32_MAX)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("cdp.evaluate_thompson: logged row %d has an arm or context out of range", i + 1)));
		n_arms = Max(n_arms, rows[i].arm + 1);
		n_ctx = Max(n_ctx, rows[i].context + 1);
	}
	if ((double) n_arms * n_ctx > 1e7)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("cdp.evaluate_thompson: %d arms x %d contexts is too many", n_arms, n_ctx)));
	scratch = palloc(sizeof(double) * 2 * Max(n_arms, 1) * Max(n_ctx, 1));
	if (cdp_evaluate_thompson(rows, n, Max(n_arms, 1), Max(n_ctx, 1), PG_GETARG_FLOAT8(4), PG_GETARG_FLOAT8(5),
							  PG_GETARG_INT32(6), (uint64) PG_GETARG_INT64(7), scratch,
							  &est[0], &est[1], &est[2]) != 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cdp.evaluate_thompson: invalid log or parameters"),
						errhint("Arms and contexts are indexes from 0, rewards in [0, 1], propensities in (0, 1], the prior positive, draws at least 1.")));
	for (i = 0; i < 3; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, isnan(est[i].value), isnan(est[i].value), isnan(est[i].value), false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Float8GetDatum(est[i].value);
		values[2] = Float8GetDatum(est[i].low);
		values[3] = Float8GetDatum(est[i].high);
		values[4] = Int64GetDatum(est[i].used);
		tuplestore_putvalues(rsi->setResult, rsi->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/* cdp.known_time_zone(name text): whether PostgreSQL knows the time zone (no file scan). */
Datum
cdp_known_time_zone(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(name[0] != '\0' && strlen(name) < TZ_STRLEN_MAX && pg_tzset(name) != NULL);
}

/* cdp.rate_interval(successes, trials): the 95 % Wilson interval, NULLs without trials. */
Datum
cdp_rate_interval(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	double		low, high;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cdp.rate_interval: composite result expected");
	cdp_wilson_interval((double) PG_GETARG_INT64(0), (double) PG_GETARG_INT64(1), 1.959964, &low, &high);
	if (PG_GETARG_INT64(1) <= 0 || isnan(low) || isnan(high))
		nulls[0] = nulls[1] = true;
	values[0] = Float8GetDatum(low);
	values[1] = Float8GetDatum(high);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
