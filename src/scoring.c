/*
 * scoring.c
 *	  Lifetime-value models in SQL: the aggregates cdp.bgnbd_fit,
 *	  cdp.pareto_nbd_fit, cdp.nbd_fit and cdp.gamma_gamma_fit, and the functions that
 *	  apply their fitted parameters (p_alive, expected purchases, expected
 *	  value, clv).  The mathematics and the optimizer are in
 *	  src/core/btyd.c; this file converts datums and jsonb.
 *
 * The aggregates collect their customers' columns in arrays (the state is
 * internal, allocated in the aggregate context), can be combined and
 * serialized for parallel plans, and fit in the final function.  The
 * parameters travel as jsonb, {"model": "bgnbd", "r": ..., "alpha": ...},
 * which the apply functions read back and check.
 */
#include "postgres.h"

#include "btyd.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include <math.h>

PG_FUNCTION_INFO_V1(cdp_btyd_accum3);
PG_FUNCTION_INFO_V1(cdp_btyd_accum2);
PG_FUNCTION_INFO_V1(cdp_btyd_combine);
PG_FUNCTION_INFO_V1(cdp_btyd_serialize);
PG_FUNCTION_INFO_V1(cdp_btyd_deserialize);
PG_FUNCTION_INFO_V1(cdp_bgnbd_fit_final);
PG_FUNCTION_INFO_V1(cdp_pareto_fit_final);
PG_FUNCTION_INFO_V1(cdp_gg_fit_final);
PG_FUNCTION_INFO_V1(cdp_nbd_fit_final);
PG_FUNCTION_INFO_V1(cdp_bgnbd_p_alive);
PG_FUNCTION_INFO_V1(cdp_bgnbd_expected_purchases);
PG_FUNCTION_INFO_V1(cdp_pareto_p_alive);
PG_FUNCTION_INFO_V1(cdp_pareto_expected_purchases);
PG_FUNCTION_INFO_V1(cdp_nbd_expected_purchases);
PG_FUNCTION_INFO_V1(cdp_gg_expected_value);
PG_FUNCTION_INFO_V1(cdp_clv_sql);

#define STATE_VERSION 1
#define MAX_COLS 3

/* Customers collected by an aggregate: ncols parallel columns of doubles. */
typedef struct BtydState
{
	int			ncols;
	int64		n;
	int64		cap;
	double	   *col[MAX_COLS];
} BtydState;

/* Names of each model's parameters, in the core's order. */
static const char *const bgnbd_names[] = {"r", "alpha", "a", "b"};
static const char *const pareto_names[] = {"r", "alpha", "s", "beta"};
static const char *const gg_names[] = {"p", "q", "gamma"};
static const char *const nbd_names[] = {"r", "alpha"};

/* The model's name in jsonb, and its parameter names. */
static const char *
model_info(CdpBtydModel model, const char *const **names, int *n)
{
	switch (model)
	{
		case CDP_BTYD_BGNBD:
			*names = bgnbd_names;
			*n = 4;
			return "bgnbd";
		case CDP_BTYD_PARETO_NBD:
			*names = pareto_names;
			*n = 4;
			return "pareto_nbd";
		case CDP_BTYD_NBD:
			*names = nbd_names;
			*n = 2;
			return "nbd";
		case CDP_BTYD_GAMMA_GAMMA:
		default:
			*names = gg_names;
			*n = 3;
			return "gamma_gamma";
	}
}

/* A new empty state in the aggregate context. */
static BtydState *
new_state(FunctionCallInfo fcinfo, int ncols)
{
	MemoryContext agg;
	BtydState  *s;
	int			c;

	if (!AggCheckCallContext(fcinfo, &agg))
		elog(ERROR, "aggregate function called in non-aggregate context");
	s = MemoryContextAllocZero(agg, sizeof(BtydState));
	s->ncols = ncols;
	s->cap = 1024;
	for (c = 0; c < ncols; c++)
		s->col[c] = MemoryContextAlloc(agg, sizeof(double) * s->cap);
	return s;
}

/* Makes room for extra more rows. */
static void
reserve(BtydState *s, int64 extra)
{
	int			c;

	if (s->n + extra <= s->cap)
		return;
	while (s->cap < s->n + extra)
		s->cap *= 2;
	for (c = 0; c < s->ncols; c++)
		s->col[c] = repalloc_huge(s->col[c], sizeof(double) * s->cap);
}

/* Reads argument i as a double (the caller has checked it is not NULL). */
static double
arg_double(FunctionCallInfo fcinfo, int i)
{
	return DatumGetFloat8(PG_GETARG_DATUM(i));
}

/* Transition of bgnbd_fit / pareto_nbd_fit: one customer (x, t_x, t). */
Datum
cdp_btyd_accum3(PG_FUNCTION_ARGS)
{
	BtydState  *s = PG_ARGISNULL(0) ? NULL : (BtydState *) PG_GETARG_POINTER(0);
	double		x;
	double		t_x;
	double		t;

	if (s == NULL)
		s = new_state(fcinfo, 3);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(s);	/* a customer with an unknown value is left out */
	x = arg_double(fcinfo, 1);
	t_x = arg_double(fcinfo, 2);
	t = arg_double(fcinfo, 3);
	if (cdp_btyd_check_customer(x, t_x, t) != CDP_BTYD_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer history x = %g, t_x = %g, t = %g", x, t_x, t),
				 errhint("x is the number of repeat purchases (a whole number >= 0), t_x the time of the last "
						 "purchase and t the age of the customer, both since the first purchase: 0 <= t_x <= t, t > 0.")));
	reserve(s, 1);
	s->col[0][s->n] = x;
	s->col[1][s->n] = x > 0 ? t_x : 0;
	s->col[2][s->n] = t;
	s->n++;
	PG_RETURN_POINTER(s);
}

/* Transition of gamma_gamma_fit: one customer (x, mean repeat value). */
Datum
cdp_btyd_accum2(PG_FUNCTION_ARGS)
{
	BtydState  *s = PG_ARGISNULL(0) ? NULL : (BtydState *) PG_GETARG_POINTER(0);
	double		x;
	double		m;

	if (s == NULL)
		s = new_state(fcinfo, 2);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(s);
	x = arg_double(fcinfo, 1);
	m = arg_double(fcinfo, 2);
	if (!isfinite(x) || !isfinite(m) || x < 0 || x != floor(x) || m < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer spend x = %g, avg_value = %g", x, m),
				 errhint("x is the number of repeat purchases (a whole number >= 0) and avg_value their mean value (>= 0).")));
	if (x == 0 || m == 0)
		PG_RETURN_POINTER(s);	/* no repeat purchase: says nothing about spend */
	reserve(s, 1);
	s->col[0][s->n] = x;
	s->col[1][s->n] = m;
	s->n++;
	PG_RETURN_POINTER(s);
}

/* Combines two partial states (parallel aggregation). */
Datum
cdp_btyd_combine(PG_FUNCTION_ARGS)
{
	BtydState  *a = PG_ARGISNULL(0) ? NULL : (BtydState *) PG_GETARG_POINTER(0);
	BtydState  *b = PG_ARGISNULL(1) ? NULL : (BtydState *) PG_GETARG_POINTER(1);
	int			c;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = new_state(fcinfo, b->ncols);
	if (a->ncols != b->ncols)
		elog(ERROR, "cannot combine aggregate states of %d and %d columns", a->ncols, b->ncols);
	reserve(a, b->n);
	for (c = 0; c < a->ncols; c++)
		memcpy(a->col[c] + a->n, b->col[c], sizeof(double) * b->n);
	a->n += b->n;
	PG_RETURN_POINTER(a);
}

/* Serializes a state: version, columns, rows, then each column. */
Datum
cdp_btyd_serialize(PG_FUNCTION_ARGS)
{
	BtydState  *s = (BtydState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int			c;
	int64		i;

	pq_begintypsend(&buf);
	pq_sendint8(&buf, STATE_VERSION);
	pq_sendint8(&buf, s->ncols);
	pq_sendint64(&buf, s->n);
	for (c = 0; c < s->ncols; c++)
		for (i = 0; i < s->n; i++)
			pq_sendfloat8(&buf, s->col[c][i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Reads a serialized state back, checking every byte. */
Datum
cdp_btyd_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	BtydState  *s;
	int			version;
	int			ncols;
	int64		n;
	int			c;
	int64		i;

	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < 10)
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						errmsg("invalid lifetime-value aggregate state: too short")));
	version = pq_getmsgbyte(&buf);
	ncols = pq_getmsgbyte(&buf);
	n = pq_getmsgint64(&buf);
	if (version != STATE_VERSION || ncols < 2 || ncols > MAX_COLS || n < 0 ||
		(int64) (buf.len - buf.cursor) != n * ncols * (int64) sizeof(double))
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						errmsg("invalid lifetime-value aggregate state")));
	s = new_state(fcinfo, ncols);
	reserve(s, n);
	for (c = 0; c < ncols; c++)
		for (i = 0; i < n; i++)
			s->col[c][i] = pq_getmsgfloat8(&buf);
	s->n = n;
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(s);
}

/* Appends a double as JSON (null when not finite). */
static void
json_number(StringInfo out, double v)
{
	if (isfinite(v))
		appendStringInfo(out, "%.17g", v);
	else
		appendStringInfoString(out, "null");
}

/* The fit as jsonb: parameters, log-likelihood, counts, convergence, status. */
static Datum
fit_jsonb(const CdpBtydFit *fit)
{
	StringInfoData out;
	const char *const *names;
	int			np;
	const char *model = model_info(fit->model, &names, &np);
	bool		ok = fit->status == CDP_BTYD_OK;
	int			k;

	initStringInfo(&out);
	appendStringInfo(&out, "{\"model\": \"%s\"", model);
	for (k = 0; k < np; k++)
	{
		appendStringInfo(&out, ", \"%s\": ", names[k]);
		if (ok)
			json_number(&out, fit->params[k]);
		else
			appendStringInfoString(&out, "null");
	}
	appendStringInfoString(&out, ", \"log_likelihood\": ");
	json_number(&out, ok ? fit->ll : NAN);
	appendStringInfo(&out, ", \"customers\": %.0f, \"rows\": %zu, \"iterations\": %d, \"converged\": %s",
					 fit->n_customers, fit->n_rows, fit->iterations, fit->converged && ok ? "true" : "false");
	appendStringInfo(&out, ", \"status\": \"%s\", \"message\": ", cdp_btyd_strerror(fit->status));
	escape_json(&out, fit->message);
	if (ok)
	{
		appendStringInfoString(&out, ", \"se\": {");
		for (k = 0; k < np; k++)
		{
			appendStringInfo(&out, "%s\"%s\": ", k ? ", " : "", names[k]);
			json_number(&out, fit->se[k]);
		}
		appendStringInfoChar(&out, '}');
	}
	else
	{
		appendStringInfoString(&out, ", \"last_iterate\": {");
		for (k = 0; k < np; k++)
		{
			appendStringInfo(&out, "%s\"%s\": ", k ? ", " : "", names[k]);
			json_number(&out, fit->params[k]);
		}
		appendStringInfoChar(&out, '}');
	}
	appendStringInfoChar(&out, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
}

/*
 * Asked by the core before each likelihood evaluation: stop on a cancel or
 * terminate request (not on every pending interrupt: parallel workers'
 * messages set InterruptPending too).
 */
static int
fit_interrupted(void *arg)
{
	return QueryCancelPending || ProcDiePending;
}

/* Runs a fit over the aggregate's customers and returns its jsonb. */
static Datum
fit_final(FunctionCallInfo fcinfo, CdpBtydModel model)
{
	BtydState  *s = PG_ARGISNULL(0) ? NULL : (BtydState *) PG_GETARG_POINTER(0);
	CdpBtydFit	fit;
	CdpBtydOptions opt;
	int			rc;

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "aggregate function called in non-aggregate context");
	if (s == NULL || s->n == 0)
		PG_RETURN_NULL();
	memset(&fit, 0, sizeof(fit));
	memset(&opt, 0, sizeof(opt));
	opt.interrupted = fit_interrupted;
	/* the core allocates with malloc: no error may be raised while it runs */
	if (model == CDP_BTYD_BGNBD)
		rc = cdp_btyd_fit_bgnbd(s->col[0], s->col[1], s->col[2], NULL, s->n, &opt, &fit);
	else if (model == CDP_BTYD_PARETO_NBD)
		rc = cdp_btyd_fit_pareto(s->col[0], s->col[1], s->col[2], NULL, s->n, &opt, &fit);
	else if (model == CDP_BTYD_NBD)
		rc = cdp_btyd_fit_nbd(s->col[0], s->col[1], s->col[2], NULL, s->n, &opt, &fit);
	else
		rc = cdp_btyd_fit_gg(s->col[0], s->col[1], NULL, s->n, &opt, &fit);
	if (rc == CDP_BTYD_EINTR)
	{
		CHECK_FOR_INTERRUPTS();
		elog(ERROR, "lifetime-value fit interrupted");
	}
	if (rc == CDP_BTYD_ENOMEM)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	fit.model = model;
	fit.status = rc;
	PG_RETURN_DATUM(fit_jsonb(&fit));
}

/* Final function of cdp.bgnbd_fit. */
Datum
cdp_bgnbd_fit_final(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, CDP_BTYD_BGNBD);
}

/* Final function of cdp.pareto_nbd_fit. */
Datum
cdp_pareto_fit_final(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, CDP_BTYD_PARETO_NBD);
}

/* Final function of cdp.nbd_fit. */
Datum
cdp_nbd_fit_final(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, CDP_BTYD_NBD);
}

/* Final function of cdp.gamma_gamma_fit. */
Datum
cdp_gg_fit_final(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, CDP_BTYD_GAMMA_GAMMA);
}

/* A top-level string or number field of a jsonb object, as text, or NULL. */
static char *
jsonb_field(Jsonb *j, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(j))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&j->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

/* Reads the parameters of a model from jsonb made by its fit aggregate. */
static void
read_params(Jsonb *j, CdpBtydModel model, double *params)
{
	const char *const *names;
	int			np;
	const char *want = model_info(model, &names, &np);
	char	   *got = jsonb_field(j, "model");
	int			k;

	if (got == NULL || strcmp(got, want) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters are not those of a %s model", want),
				 errdetail("Their \"model\" field is %s%s%s.", got ? "\"" : "", got ? got : "missing", got ? "\"" : ""),
				 errhint("Pass the jsonb returned by cdp.%s_fit.", want)));
	for (k = 0; k < np; k++)
	{
		char	   *v = jsonb_field(j, names[k]);
		char	   *end;

		params[k] = v ? strtod(v, &end) : NAN;
		if (v == NULL || *end != '\0' || !isfinite(params[k]) || params[k] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s parameter \"%s\" is missing or not a positive number", want, names[k]),
					 errhint("A fit that did not succeed has no parameters; see its \"status\" and \"message\".")));
	}
}

/* Raises the error of a core status for an apply function. */
static void
check_apply(int rc, const char *what)
{
	if (rc == CDP_BTYD_OK)
		return;
	if (rc == CDP_BTYD_EINVAL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid arguments to %s", what),
				 errhint("x is a whole number >= 0, 0 <= t_x <= t, t > 0, and horizons and values are >= 0.")));
	if (rc == CDP_BTYD_EDOMAIN)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s is undefined for these parameters", what),
				 errhint("For Gamma-Gamma, the expected value needs q > 1.")));
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("%s could not be computed: %s", what, cdp_btyd_strerror(rc))));
}

/* A model's P(alive) of (x, t_x, T). */
typedef int (*PAliveFn) (const double *params, double x, double t_x, double T, double *out);

/* A model's expected purchases in the next t of (x, t_x, T). */
typedef int (*ExpectedFn) (const double *params, double x, double t_x, double T, double t, double *out);

/* SQL (params, x, t_x, t) -> P(alive), for one model. */
static Datum
apply_p_alive(FunctionCallInfo fcinfo, CdpBtydModel model, PAliveFn fn, const char *what)
{
	double		p[CDP_BTYD_MAX_PARAMS];
	double		out;

	read_params(PG_GETARG_JSONB_P(0), model, p);
	check_apply(fn(p, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3), &out), what);
	PG_RETURN_FLOAT8(out);
}

/* SQL (params, horizon, x, t_x, t) -> expected purchases, for one model. */
static Datum
apply_expected(FunctionCallInfo fcinfo, CdpBtydModel model, ExpectedFn fn, const char *what)
{
	double		p[CDP_BTYD_MAX_PARAMS];
	double		out;

	read_params(PG_GETARG_JSONB_P(0), model, p);
	check_apply(fn(p, PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3), PG_GETARG_FLOAT8(4), PG_GETARG_FLOAT8(1), &out),
				what);
	PG_RETURN_FLOAT8(out);
}

/* cdp.bgnbd_p_alive(params, x, t_x, t) */
Datum
cdp_bgnbd_p_alive(PG_FUNCTION_ARGS)
{
	return apply_p_alive(fcinfo, CDP_BTYD_BGNBD, cdp_btyd_bgnbd_p_alive, "cdp.bgnbd_p_alive");
}

/* cdp.bgnbd_expected_purchases(params, horizon, x, t_x, t) */
Datum
cdp_bgnbd_expected_purchases(PG_FUNCTION_ARGS)
{
	return apply_expected(fcinfo, CDP_BTYD_BGNBD, cdp_btyd_bgnbd_expected, "cdp.bgnbd_expected_purchases");
}

/* cdp.pareto_nbd_p_alive(params, x, t_x, t) */
Datum
cdp_pareto_p_alive(PG_FUNCTION_ARGS)
{
	return apply_p_alive(fcinfo, CDP_BTYD_PARETO_NBD, cdp_btyd_pareto_p_alive, "cdp.pareto_nbd_p_alive");
}

/* cdp.pareto_nbd_expected_purchases(params, horizon, x, t_x, t) */
Datum
cdp_pareto_expected_purchases(PG_FUNCTION_ARGS)
{
	return apply_expected(fcinfo, CDP_BTYD_PARETO_NBD, cdp_btyd_pareto_expected,
						  "cdp.pareto_nbd_expected_purchases");
}

/* cdp.nbd_expected_purchases(params, horizon, x, t_x, t) */
Datum
cdp_nbd_expected_purchases(PG_FUNCTION_ARGS)
{
	return apply_expected(fcinfo, CDP_BTYD_NBD, cdp_btyd_nbd_expected, "cdp.nbd_expected_purchases");
}

/* cdp.gamma_gamma_expected_value(params, x, avg_value) */
Datum
cdp_gg_expected_value(PG_FUNCTION_ARGS)
{
	double		p[CDP_BTYD_MAX_PARAMS];
	double		out;

	read_params(PG_GETARG_JSONB_P(0), CDP_BTYD_GAMMA_GAMMA, p);
	check_apply(cdp_btyd_gg_expected_value(p, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2), &out),
				"cdp.gamma_gamma_expected_value");
	PG_RETURN_FLOAT8(out);
}

/*
 * cdp.clv(params, spend_params, x, t_x, t, avg_value, periods,
 * period_length, discount_rate, margin): the discounted margin expected over
 * the next periods; params of a BG/NBD, Pareto/NBD or NBD fit, spend_params
 * of a Gamma-Gamma fit.
 */
Datum
cdp_clv_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *pj = PG_GETARG_JSONB_P(0);
	char	   *model_name = jsonb_field(pj, "model");
	CdpBtydModel model = CDP_BTYD_BGNBD;
	double		p[CDP_BTYD_MAX_PARAMS];
	double		gg[CDP_BTYD_MAX_PARAMS];
	double		x = PG_GETARG_FLOAT8(2);
	double		value;
	double		out;
	int32		periods = PG_GETARG_INT32(6);

	if (model_name && strcmp(model_name, "pareto_nbd") == 0)
		model = CDP_BTYD_PARETO_NBD;
	else if (model_name && strcmp(model_name, "nbd") == 0)
		model = CDP_BTYD_NBD;
	read_params(pj, model, p);
	read_params(PG_GETARG_JSONB_P(1), CDP_BTYD_GAMMA_GAMMA, gg);
	if (periods < 0 || periods > 100000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("periods must be between 0 and 100000, not %d", periods)));
	check_apply(cdp_btyd_gg_expected_value(gg, x, PG_GETARG_FLOAT8(5), &value), "cdp.clv");
	check_apply(cdp_btyd_clv(model, p, x, PG_GETARG_FLOAT8(3), PG_GETARG_FLOAT8(4), value, PG_GETARG_FLOAT8(9),
							 periods, PG_GETARG_FLOAT8(7), PG_GETARG_FLOAT8(8), &out),
				"cdp.clv");
	PG_RETURN_FLOAT8(out);
}
