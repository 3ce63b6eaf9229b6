/*
 * journey_agg.c
 *	  The journey and session state machines of src/core in plain SQL: the
 *	  aggregate cdp.funnel_journeys (the journeys of a group of events, for
 *	  any grouping a query chooses) and the window function cdp.session_no
 *	  (sessionization of the rows of a window partition).
 *
 * The aggregate keeps a group's funnel events (time, id, step, channel
 * number) in its state and runs cdp_funnel_journeys in the final function,
 * so the order of the rows does not matter and partial states combine by
 * concatenation: it is parallel safe, with a versioned serial form.  The
 * funnel's definition is read from cdp.funnels once per query (per worker).
 */
#include "cdp.h"
#include "journey.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "windowapi.h"

PG_FUNCTION_INFO_V1(cdp_funnel_journeys_trans);
PG_FUNCTION_INFO_V1(cdp_funnel_journeys_final);
PG_FUNCTION_INFO_V1(cdp_funnel_journeys_combine);
PG_FUNCTION_INFO_V1(cdp_funnel_journeys_serial);
PG_FUNCTION_INFO_V1(cdp_funnel_journeys_deserial);
PG_FUNCTION_INFO_V1(cdp_session_no);

/* Version of the serial form of the aggregate's state. */
#define FJ_STATE_VERSION 1

/* Most channels one group may use (channel numbers are int32 in the core). */
#define FJ_MAX_CHANNELS 10000

/* State of cdp.funnel_journeys: one group's funnel events. */
typedef struct FjState
{
	char	   *funnel;
	CdpFunnelDef def;
	int64		as_of;
	int			n_channels;
	int			cap_channels;
	char	  **channels;
	int64		n;
	int64		cap;
	CdpFunnelEvent *ev;
} FjState;

/*
 * The funnels of cdp.funnels, read once per query (kept in fn_extra), and
 * the one named: groups of a query may use different funnels.
 */
static const Funnel *
funnel_setup(FunctionCallInfo fcinfo, const char *funnel, const Setup **setup)
{
	Setup	   *s = (Setup *) fcinfo->flinfo->fn_extra;
	int			k;

	if (s == NULL)
	{
		cdp_spi_connect();
		s = cdp_journey_load_setup(NULL, fcinfo->flinfo->fn_mcxt);
		cdp_spi_finish();
		fcinfo->flinfo->fn_extra = s;
	}
	k = cdp_journey_setup_funnel(s, funnel);
	if (k < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("funnel \"%s\" does not exist", funnel),
				 errhint("Funnels are listed in cdp.funnels.")));
	*setup = s;
	return &s->funnels[k];
}

/* A new empty state in cxt. */
static FjState *
fj_new(MemoryContext cxt, const char *funnel, const CdpFunnelDef *def, int64 as_of)
{
	FjState    *s = MemoryContextAllocZero(cxt, sizeof(FjState));

	s->funnel = MemoryContextStrdup(cxt, funnel);
	s->def = *def;
	s->as_of = as_of;
	s->cap_channels = 8;
	s->channels = MemoryContextAlloc(cxt, sizeof(char *) * s->cap_channels);
	s->cap = 64;
	s->ev = MemoryContextAllocHuge(cxt, sizeof(CdpFunnelEvent) * s->cap);
	return s;
}

/* Number of a channel in the state (len bytes), added if new. */
static int
fj_channel(FjState *s, MemoryContext cxt, const char *name, int len)
{
	int			i;

	for (i = 0; i < s->n_channels; i++)
		if ((int) strlen(s->channels[i]) == len && memcmp(s->channels[i], name, len) == 0)
			return i;
	if (s->n_channels == FJ_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("more than %d channels in one group of cdp.funnel_journeys", FJ_MAX_CHANNELS)));
	if (s->n_channels == s->cap_channels)
	{
		s->cap_channels *= 2;
		s->channels = repalloc(s->channels, sizeof(char *) * s->cap_channels);
	}
	s->channels[s->n_channels] = MemoryContextAlloc(cxt, len + 1);
	memcpy(s->channels[s->n_channels], name, len);
	s->channels[s->n_channels][len] = '\0';
	return s->n_channels++;
}

/* Appends an event to the state. */
static void
fj_append(FjState *s, const CdpFunnelEvent *e)
{
	if (s->n == s->cap)
	{
		s->cap *= 2;
		s->ev = repalloc_huge(s->ev, sizeof(CdpFunnelEvent) * s->cap);
	}
	s->ev[s->n++] = *e;
}

/* Refuses to mix groups made with other funnels or times. */
static void
fj_same(const FjState *s, const char *funnel, int64 as_of)
{
	if (strcmp(s->funnel, funnel) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("funnel_id must be the same on every row of a group"),
				 errdetail("The group holds rows of funnel \"%s\" and of funnel \"%s\".", s->funnel, funnel)));
	if (s->as_of != as_of)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of must be the same on every row of a group"),
				 errhint("Pass a constant such as now().")));
}

/*
 * Transition of cdp.funnel_journeys(funnel_id, type, occurred_at, channel,
 * event_id, as_of): keeps the row if its type is a step of the funnel.
 */
Datum
cdp_funnel_journeys_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	FjState    *s = PG_ARGISNULL(0) ? NULL : (FjState *) PG_GETARG_POINTER(0);
	char	   *funnel;
	const Setup *setup;
	const Funnel *f;
	int64		as_of;
	text	   *type;
	int			ti;
	CdpFunnelEvent e;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "cdp_funnel_journeys_trans called in non-aggregate context");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("funnel_id must not be null"),
				 errhint("Funnels are listed in cdp.funnels.")));
	if (PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be null"),
				 errhint("Pass the time up to which events count, usually now().")));
	funnel = text_to_cstring(PG_GETARG_TEXT_PP(1));
	as_of = PG_GETARG_TIMESTAMPTZ(6);
	f = funnel_setup(fcinfo, funnel, &setup);
	if (s == NULL)
		s = fj_new(aggcxt, funnel, &f->def, as_of);
	else
		fj_same(s, funnel, as_of);
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(s);
	type = PG_GETARG_TEXT_PP(2);
	ti = cdp_journey_setup_type(setup, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (ti < 0 || f->step_of[ti] == 0)
		PG_RETURN_POINTER(s);	/* not a step of this funnel */
	e.time = PG_GETARG_TIMESTAMPTZ(3);
	e.event_id = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5);
	e.step = f->step_of[ti];
	if (PG_ARGISNULL(4))
		e.channel = fj_channel(s, aggcxt, "", 0);
	else
	{
		text	   *ch = PG_GETARG_TEXT_PP(4);

		e.channel = fj_channel(s, aggcxt, VARDATA_ANY(ch), VARSIZE_ANY_EXHDR(ch));
	}
	fj_append(s, &e);
	PG_RETURN_POINTER(s);
}

/* Combines two partial states (parallel aggregation). */
Datum
cdp_funnel_journeys_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	FjState    *a = PG_ARGISNULL(0) ? NULL : (FjState *) PG_GETARG_POINTER(0);
	FjState    *b = PG_ARGISNULL(1) ? NULL : (FjState *) PG_GETARG_POINTER(1);
	int		   *map;
	int64		i;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "cdp_funnel_journeys_combine called in non-aggregate context");
	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = fj_new(aggcxt, b->funnel, &b->def, b->as_of);
	else
		fj_same(a, b->funnel, b->as_of);
	map = palloc(sizeof(int) * (b->n_channels + 1));
	for (i = 0; i < b->n_channels; i++)
		map[i] = fj_channel(a, aggcxt, b->channels[i], strlen(b->channels[i]));
	for (i = 0; i < b->n; i++)
	{
		CdpFunnelEvent e = b->ev[i];

		e.channel = map[e.channel];
		fj_append(a, &e);
	}
	pfree(map);
	PG_RETURN_POINTER(a);
}

/* Serial form of a state: versioned, every field in network byte order. */
Datum
cdp_funnel_journeys_serial(PG_FUNCTION_ARGS)
{
	FjState    *s = (FjState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int			len = strlen(s->funnel);
	int64		i;
	int			c;

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "cdp_funnel_journeys_serial called in non-aggregate context");
	pq_begintypsend(&buf);
	pq_sendint32(&buf, FJ_STATE_VERSION);
	pq_sendint32(&buf, len);
	pq_sendbytes(&buf, s->funnel, len);
	pq_sendint32(&buf, s->def.n_steps);
	pq_sendint32(&buf, s->def.min_step);
	pq_sendint64(&buf, s->def.conversion_window);
	pq_sendint64(&buf, s->def.abandon_after);
	pq_sendint64(&buf, s->as_of);
	pq_sendint32(&buf, s->n_channels);
	for (c = 0; c < s->n_channels; c++)
	{
		int			cl = strlen(s->channels[c]);

		pq_sendint32(&buf, cl);
		pq_sendbytes(&buf, s->channels[c], cl);
	}
	pq_sendint64(&buf, s->n);
	for (i = 0; i < s->n; i++)
	{
		pq_sendint64(&buf, s->ev[i].time);
		pq_sendint64(&buf, s->ev[i].event_id);
		pq_sendint32(&buf, s->ev[i].step);
		pq_sendint32(&buf, s->ev[i].channel);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Raises the error of a malformed serialized state. */
static void
bad_state(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid cdp.funnel_journeys state: %s", why)));
}

/* Reads a serialized state, checking every field. */
Datum
cdp_funnel_journeys_deserial(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	FjState    *s;
	CdpFunnelDef def;
	char	   *funnel;
	int			len;
	int			n_channels;
	int64		as_of;
	int64		n;
	int64		i;
	int			c;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "cdp_funnel_journeys_deserial called in non-aggregate context");
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if ((int32) pq_getmsgint(&buf, 4) != FJ_STATE_VERSION)
		bad_state("unknown version");
	len = (int32) pq_getmsgint(&buf, 4);
	if (len < 0 || len > buf.len - buf.cursor)
		bad_state("bad funnel name length");
	funnel = pnstrdup(pq_getmsgbytes(&buf, len), len);
	def.n_steps = (int32) pq_getmsgint(&buf, 4);
	def.min_step = (int32) pq_getmsgint(&buf, 4);
	def.conversion_window = pq_getmsgint64(&buf);
	def.abandon_after = pq_getmsgint64(&buf);
	if (cdp_funnel_check_def(&def) != CDP_FUNNEL_OK)
		bad_state("invalid funnel definition");
	as_of = pq_getmsgint64(&buf);
	s = fj_new(aggcxt, funnel, &def, as_of);
	n_channels = (int32) pq_getmsgint(&buf, 4);
	if (n_channels < 0 || n_channels > FJ_MAX_CHANNELS)
		bad_state("bad number of channels");
	for (c = 0; c < n_channels; c++)
	{
		int			cl = (int32) pq_getmsgint(&buf, 4);

		if (cl < 0 || cl > buf.len - buf.cursor)
			bad_state("bad channel length");
		if (fj_channel(s, aggcxt, pq_getmsgbytes(&buf, cl), cl) != c)
			bad_state("repeated channel");
	}
	n = pq_getmsgint64(&buf);
	if (n < 0 || n > (buf.len - buf.cursor) / 24)
		bad_state("bad number of events");
	for (i = 0; i < n; i++)
	{
		CdpFunnelEvent e;

		e.time = pq_getmsgint64(&buf);
		e.event_id = pq_getmsgint64(&buf);
		e.step = (int32) pq_getmsgint(&buf, 4);
		e.channel = (int32) pq_getmsgint(&buf, 4);
		if (e.step < 1 || e.step > def.n_steps || e.channel < 0 || e.channel >= n_channels)
			bad_state("event out of range");
		fj_append(s, &e);
	}
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(s);
}

/*
 * Final function: the group's journeys at as_of, as an array of
 * cdp.journey in order of start (empty when there is none).
 */
Datum
cdp_funnel_journeys_final(PG_FUNCTION_ARGS)
{
	FjState    *s = PG_ARGISNULL(0) ? NULL : (FjState *) PG_GETARG_POINTER(0);
	Oid			array_type = get_fn_expr_rettype(fcinfo->flinfo);
	Oid			elem_type = get_element_type(array_type);
	TupleDesc	desc;
	CdpFunnelEvent *ev;
	CdpJourney *out;
	Datum	   *rows;
	int64		nj;
	int64		i;

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "cdp_funnel_journeys_final called in non-aggregate context");
	if (!OidIsValid(elem_type))
		elog(ERROR, "cdp_funnel_journeys_final must return an array");
	if (s == NULL || s->n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(elem_type));
	desc = BlessTupleDesc(lookup_rowtype_tupdesc_copy(elem_type, -1));
	if (desc->natts != 16)
		elog(ERROR, "type cdp.journey does not have the expected columns");

	/* the core reorders its input: work on a copy, the state may be reused */
	ev = palloc_extended(sizeof(CdpFunnelEvent) * s->n, MCXT_ALLOC_HUGE);
	memcpy(ev, s->ev, sizeof(CdpFunnelEvent) * s->n);
	out = palloc_extended(sizeof(CdpJourney) * s->n, MCXT_ALLOC_HUGE);
	nj = cdp_funnel_journeys(&s->def, ev, s->n, s->as_of, out, s->n);
	if (nj < 0)
		elog(ERROR, "funnel state machine: %s", cdp_funnel_error_message((int) nj));
	rows = palloc_extended(sizeof(Datum) * (nj + 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < nj; i++)
	{
		const CdpJourney *j = &out[i];
		Datum		v[16];
		bool		nulls[16];
		bool		over = j->status != CDP_JOURNEY_IN_PROGRESS && j->status != CDP_JOURNEY_OPEN;
		bool		completed = j->status == CDP_JOURNEY_COMPLETED ||
			j->status == CDP_JOURNEY_RECOVERED || j->status == CDP_JOURNEY_CONVERTED_ELSEWHERE;

		memset(nulls, 0, sizeof(nulls));
		v[0] = Int64GetDatum(j->journey_no);
		v[1] = CStringGetTextDatum(cdp_journey_status_name(j->status));
		v[2] = BoolGetDatum(j->broken != 0);
		v[3] = cdp_journey_time_datum(j->started_at);
		v[4] = cdp_journey_time_datum(j->last_event_at);
		v[5] = Int32GetDatum(j->reached_step);
		v[6] = Int64GetDatum(j->n_events);
		v[7] = CStringGetTextDatum(s->channels[j->start_channel]);
		v[8] = j->broken ? cdp_journey_time_datum(j->broken_at) : (Datum) 0;
		nulls[8] = !j->broken;
		v[9] = Int32GetDatum(j->break_step);
		nulls[9] = !j->broken;
		v[10] = j->broken ? CStringGetTextDatum(s->channels[j->break_channel]) : (Datum) 0;
		nulls[10] = !j->broken;
		v[11] = over ? cdp_journey_time_datum(j->resolved_at) : (Datum) 0;
		nulls[11] = !over;
		v[12] = completed ? CStringGetTextDatum(s->channels[j->resolved_channel]) : (Datum) 0;
		nulls[12] = !completed;
		v[13] = Int64GetDatum(j->first_event_id);
		v[14] = Int64GetDatum(j->last_event_id);
		v[15] = j->broken ? Int64GetDatum(j->break_event_id) : (Datum) 0;
		nulls[15] = !j->broken;
		rows[i] = HeapTupleGetDatum(heap_form_tuple(desc, v, nulls));
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(rows, (int) nj, elem_type, -1, false, TYPALIGN_DOUBLE));
}

/* ----------------------------------------------------------------------
 * cdp.session_no: the window function of sessionization
 * ----------------------------------------------------------------------
 */

/* cdp.session_timeout in microseconds. */
static int64
session_timeout_usecs(void)
{
	return (int64) cdp_session_timeout * USECS_PER_SEC;
}

/* State of cdp.session_no in one window partition. */
typedef struct SessionWindow
{
	bool		started;
	int64		timeout;
	CdpSessionState st;
} SessionWindow;

/*
 * cdp.session_no(occurred_at, event_id [, timeout]) OVER (PARTITION BY
 * profile, channel ORDER BY occurred_at, event_id): the number of the
 * row's session in its partition, a new one after cdp.session_timeout (or
 * timeout) of inactivity.
 */
Datum
cdp_session_no(PG_FUNCTION_ARGS)
{
	WindowObject w = PG_WINDOW_OBJECT();
	SessionWindow *s = (SessionWindow *) WinGetPartitionLocalMemory(w, sizeof(SessionWindow));
	bool		isnull;
	Datum		t;
	Datum		id;
	int			rc;

	if (!s->started)
	{
		s->timeout = session_timeout_usecs();
		if (PG_NARGS() > 2)
		{
			Datum		iv = WinGetFuncArgCurrent(w, 2, &isnull);

			if (!isnull)
				s->timeout = cdp_interval_usecs(DatumGetIntervalP(iv));
			if (isnull || s->timeout <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("session timeout must be a positive interval"),
						 errhint("Sessions usually end after 30 minutes of inactivity: pass interval '30 minutes'.")));
		}
		cdp_session_init(&s->st, 0);
		s->started = true;
	}
	WinSetMarkPosition(w, WinGetCurrentPosition(w));
	t = WinGetFuncArgCurrent(w, 0, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	id = WinGetFuncArgCurrent(w, 1, &isnull);
	rc = cdp_session_feed(&s->st, s->timeout, DatumGetTimestampTz(t),
						  isnull ? 0 : DatumGetInt64(id), NULL);
	if (rc == CDP_SESSION_ELATE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rows of a session window must come in time order"),
				 errhint("Use OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id).")));
	if (rc < 0)
		elog(ERROR, "sessionization failed (%d)", rc);
	PG_RETURN_INT64(s->st.cur.session_no);
}
