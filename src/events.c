/*
 * events.c
 *	  The rules of the event store and the paths that take typed events: the
 *	  row check of cdp.events (COPY, INSERT), cdp.track and cdp.check_event.
 *	  The text entry points (loader view, cdp.ingest) are in ingest.c.
 *
 * Every path into cdp.events goes through check_event(), so one set of rules
 * (src/core/event_rules.c) decides what is accepted.  cdp.track raises an
 * error.  COPY and INSERT divert a bad row to cdp.rejected_events with its
 * raw form and the reason: the CHECK constraint events_accept calls
 * cdp_accept_event() for every row.  It always answers true (a failed CHECK
 * would abort the whole load); for an invalid row it writes the quarantine
 * row and remembers the event, and the AFTER STATEMENT trigger
 * cdp_events_after_insert() deletes the remembered rows when the statement
 * ends (and then stitches the identities of the stored rows, stitch.c).  A
 * CHECK, unlike a BEFORE ROW trigger, leaves COPY's multi-row inserts on.
 *
 * Per-backend state: the sorted channel names of cdp.channels, dropped by a
 * relcache invalidation (the statement trigger on cdp.channels sends one, so
 * every session sees a registry change at commit); and the list of rows
 * waiting to be purged, emptied at the end of each statement, at transaction
 * end, and for the entries of a subtransaction that aborts.
 */
#include "cdp.h"
#include "event_rules.h"
#include "events.h"
#include "identity.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(cdp_accept_event);
PG_FUNCTION_INFO_V1(cdp_events_after_insert);
PG_FUNCTION_INFO_V1(cdp_config_changed);
PG_FUNCTION_INFO_V1(cdp_track);
PG_FUNCTION_INFO_V1(cdp_check_event);

const char *const cdp_field_names[N_FIELDS] = {
	"occurred_at", "channel", "type", "identifiers", "properties", "amount", "source"
};

/* 1970-01-01 00:00 UTC in PostgreSQL's microseconds since 2000-01-01. */
#define UNIX_EPOCH_TIMESTAMPTZ \
	((TimestampTz) (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY)

static MemoryContext channel_cxt = NULL;
static Oid	channels_relid = InvalidOid;
static bool channels_valid = false;
static const char **channel_names = NULL;
static int	n_channels = 0;
static char *channel_list = NULL;	/* "app, call_center, ..." for hints */

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr reject_plan = NULL;

/* Marks the channel cache stale when cdp.channels is invalidated. */
static void
channels_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == channels_relid)
		channels_valid = false;
}

/* Reads cdp.channels into the backend's sorted channel array if stale. */
static void
load_channels(void)
{
	Oid			nsp;
	int			ret;
	uint64		i;
	StringInfoData list;

	if (channels_valid)
		return;
	if (channel_cxt == NULL)
	{
		channel_cxt = AllocSetContextCreate(TopMemoryContext, "cdp channels", ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(channels_invalidated, (Datum) 0);
	}
	else
		MemoryContextReset(channel_cxt);
	channel_names = NULL;
	n_channels = 0;
	channel_list = NULL;

	nsp = get_namespace_oid("cdp", false);
	channels_relid = get_relname_relid("channels", nsp);
	if (!OidIsValid(channels_relid))
		elog(ERROR, "table cdp.channels does not exist");

	/* Set first: an invalidation that arrives while reading clears it again. */
	channels_valid = true;
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute("SELECT channel FROM cdp.channels ORDER BY channel COLLATE \"C\"", true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read cdp.channels: %s", SPI_result_code_string(ret));
		channel_names = MemoryContextAllocZero(channel_cxt, sizeof(char *) * (SPI_processed + 1));
		initStringInfo(&list);
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			channel_names[i] = MemoryContextStrdup(channel_cxt, name);
			appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", name);
		}
		n_channels = (int) SPI_processed;
		channel_list = MemoryContextStrdup(channel_cxt, list.data);
		SPI_finish();
	}
	PG_CATCH();
	{
		channels_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Sets *p to a problem with a formatted message; returns false for chaining. */
bool
fail(Problem *p, CdpProblem code, const char *hint, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	p->code = code;
	p->message = buf.data;
	p->hint = hint;
	return false;
}

/* A value for a message: at most 80 bytes (whole characters), then "...". */
char *
shown(const char *s, int len)
{
	int			cut;

	if (len <= 80)
		return pnstrdup(s, len);
	cut = pg_mbcliplen(s, len, 80);
	return psprintf("%s...", pnstrdup(s, cut));
}

/* The text of a text datum for a message. */
static char *
shown_text(text *t)
{
	return shown(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* A JSON value's type name, for messages. */
const char *
jbv_kind(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a value";
	}
}

/* Name of the JSON type of a document, for messages. */
const char *
json_kind(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbExtractScalar(&jb->root, &v);
		return jbv_kind(&v);
	}
	return JB_ROOT_IS_ARRAY(jb) ? "an array" : "an object";
}

/* Checks the identifiers object: kinds, string values, count. */
static bool
check_identifiers(Jsonb *ids, Problem *p)
{
	static const char *const hint =
		"Give identifiers as a JSON object of kind and value, such as {\"email\": \"ann@x.org\", \"cookie\": \"c-81f\"}.";
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	val;
	JsonbIteratorToken tok;
	const char *why;
	int			count = JB_ROOT_COUNT(ids);

	if (!JB_ROOT_IS_OBJECT(ids))
		return fail(p, CDP_INVALID_IDENTIFIERS, hint,
					"identifiers must be a JSON object, not %s", json_kind(ids));
	if (count == 0)
		return fail(p, CDP_INVALID_IDENTIFIERS, hint, "identifiers must not be empty");
	if (count > CDP_MAX_IDENTIFIERS)
		return fail(p, CDP_INVALID_IDENTIFIERS, NULL,
					"an event may carry at most %d identifiers, not %d", CDP_MAX_IDENTIFIERS, count);

	it = JsonbIteratorInit(&ids->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		if (cdp_check_identifier_kind(key.val.string.val, key.val.string.len, &why) != CDP_OK)
			return fail(p, CDP_INVALID_IDENTIFIER_KIND,
						"Identifier kinds are lower-case words such as email, phone, cookie, device_id, loyalty_card, customer_id.",
						"invalid identifier kind \"%s\": it %s",
						shown(key.val.string.val, key.val.string.len), why);
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		if (val.type != jbvString)
			return fail(p, CDP_INVALID_IDENTIFIER_VALUE, hint,
						"identifier \"%s\" must be a string",
						shown(key.val.string.val, key.val.string.len));
		if (cdp_check_identifier_value(val.val.string.val, val.val.string.len, &why) != CDP_OK)
			return fail(p, CDP_INVALID_IDENTIFIER_VALUE, NULL,
						"invalid value \"%s\" for identifier \"%s\": it %s",
						shown(val.val.string.val, val.val.string.len),
						shown(key.val.string.val, key.val.string.len), why);
	}
	return true;
}

/* Applies every rule to an event; on failure fills *p and returns false. */
bool
check_event(const Event *ev, Problem *p)
{
	const char *why;

	if (!ev->has_occurred_at)
		return fail(p, CDP_MISSING_OCCURRED_AT, "Every event needs the time it happened.",
					"occurred_at is missing");
	switch (cdp_check_occurred_at(ev->occurred_at, GetCurrentTransactionStartTimestamp(),
								  (int64) cdp_max_clock_skew * USECS_PER_SEC,
								  UNIX_EPOCH_TIMESTAMPTZ))
	{
		case CDP_FUTURE_OCCURRED_AT:
			return fail(p, CDP_FUTURE_OCCURRED_AT,
						"Check the clock and time zone of the source, or raise cdp.max_clock_skew.",
						"occurred_at %s is in the future, more than cdp.max_clock_skew (%d s) after it was received",
						timestamptz_to_str(ev->occurred_at), cdp_max_clock_skew);
		case CDP_ANCIENT_OCCURRED_AT:
			return fail(p, CDP_ANCIENT_OCCURRED_AT,
						"A missing or zero time in the source often shows up as 1970-01-01.",
						"occurred_at %s is not after 1970-01-01 00:00:00 UTC",
						timestamptz_to_str(ev->occurred_at));
		default:
			break;
	}

	load_channels();
	if (ev->channel == NULL)
		return fail(p, CDP_MISSING_CHANNEL, psprintf("Known channels: %s.", channel_list),
					"channel is missing");
	if (cdp_find_name(channel_names, n_channels, VARDATA_ANY(ev->channel),
					  VARSIZE_ANY_EXHDR(ev->channel)) < 0)
		return fail(p, CDP_UNKNOWN_CHANNEL,
					psprintf("Known channels: %s. Register new ones in cdp.channels.", channel_list),
					"unknown channel \"%s\"", shown_text(ev->channel));

	if (ev->type == NULL)
		return fail(p, CDP_MISSING_TYPE, "Standard types are listed in cdp.event_types.",
					"type is missing");
	if (cdp_check_type(VARDATA_ANY(ev->type), VARSIZE_ANY_EXHDR(ev->type), &why) != CDP_OK)
		return fail(p, CDP_INVALID_TYPE, "Standard types are listed in cdp.event_types.",
					"invalid type \"%s\": it %s", shown_text(ev->type), why);

	if (ev->identifiers == NULL)
		return fail(p, CDP_MISSING_IDENTIFIERS,
					"Every event needs at least one identifier, such as {\"cookie\": \"c-81f\"}.",
					"identifiers are missing");
	if (!check_identifiers(ev->identifiers, p))
		return false;

	if (ev->properties != NULL && !JB_ROOT_IS_OBJECT(ev->properties))
		return fail(p, CDP_INVALID_PROPERTIES, "Use {} for an event without properties.",
					"properties must be a JSON object, not %s", json_kind(ev->properties));

	if (ev->amount != NULL && (numeric_is_nan(ev->amount) || numeric_is_inf(ev->amount)))
		return fail(p, CDP_INVALID_AMOUNT, "An amount is a finite number of money, such as 19.99.",
					"invalid amount \"%s\": it is not a finite number",
					DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(ev->amount))));

	if (ev->source != NULL &&
		cdp_check_source(VARDATA_ANY(ev->source), VARSIZE_ANY_EXHDR(ev->source), &why) != CDP_OK)
		return fail(p, CDP_INVALID_SOURCE, NULL,
					"invalid source \"%s\": it %s", shown_text(ev->source), why);
	return true;
}

/* SQLSTATE for an error raised by cdp.track. */
static int
problem_errcode(CdpProblem code)
{
	switch (code)
	{
		case CDP_MISSING_OCCURRED_AT:
		case CDP_MISSING_CHANNEL:
		case CDP_MISSING_TYPE:
		case CDP_MISSING_IDENTIFIERS:
			return ERRCODE_NULL_VALUE_NOT_ALLOWED;
		case CDP_INVALID_OCCURRED_AT:
			return ERRCODE_INVALID_DATETIME_FORMAT;
		case CDP_FUTURE_OCCURRED_AT:
		case CDP_ANCIENT_OCCURRED_AT:
			return ERRCODE_DATETIME_VALUE_OUT_OF_RANGE;
		default:
			return ERRCODE_INVALID_PARAMETER_VALUE;
	}
}

/* Raises the error for a problem (cdp.track). */
static void
raise_problem(const Problem *p)
{
	ereport(ERROR,
			(errcode(problem_errcode(p->code)),
			 errmsg("%s", p->message),
			 p->hint ? errhint("%s", p->hint) : 0));
}

/* --- building raw rows for the quarantine ------------------------------- */

/* Adds a key to an object being built. */
static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/* Adds key: string (or null) to an object being built. */
void
push_string(JsonbParseState **st, const char *key, const char *val, int len)
{
	JsonbValue	v;

	push_key(st, key);
	if (val == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) val;
		v.val.string.len = len;
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* Adds key: text datum (or null). */
static void
push_text(JsonbParseState **st, const char *key, text *t)
{
	if (t == NULL)
		push_string(st, key, NULL, 0);
	else
		push_string(st, key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* Adds key: a JSON document (or null). */
static void
push_jsonb(JsonbParseState **st, const char *key, Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL)
	{
		push_string(st, key, NULL, 0);
		return;
	}
	push_key(st, key);
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* The typed event as a JSON object, for rows refused by the row check. */
static Jsonb *
event_to_jsonb(const Event *ev)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	JsonbValue *res;
	char	   *ts = ev->has_occurred_at ? pstrdup(timestamptz_to_str(ev->occurred_at)) : NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_string(&st, "occurred_at", ts, ts ? strlen(ts) : 0);
	push_text(&st, "channel", ev->channel);
	push_text(&st, "type", ev->type);
	push_jsonb(&st, "identifiers", ev->identifiers);
	push_jsonb(&st, "properties", ev->properties);
	if (ev->amount == NULL || numeric_is_nan(ev->amount) || numeric_is_inf(ev->amount))
	{
		/* JSON has no NaN nor infinity: keep their text */
		char	   *s = ev->amount ? DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(ev->amount))) : NULL;

		push_string(&st, "amount", s, s ? strlen(s) : 0);
	}
	else
	{
		push_key(&st, "amount");
		v.type = jbvNumeric;
		v.val.numeric = ev->amount;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	push_text(&st, "source", ev->source);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* Stores a refused row in cdp.rejected_events. */
void
quarantine(const Problem *p, text *source, Jsonb *raw)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (reject_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO cdp.rejected_events (reason_code, reason, source, raw) "
									   "VALUES ($1, $2, $3, $4)", 4, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the quarantine insert: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		reject_plan = plan;
	}
	values[0] = CStringGetTextDatum(cdp_problem_code(p->code));
	values[1] = CStringGetTextDatum(p->message);
	values[2] = source ? PointerGetDatum(source) : (Datum) 0;
	nulls[2] = source ? ' ' : 'n';
	values[3] = JsonbPGetDatum(raw);
	ret = SPI_execute_plan(reject_plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not quarantine an event: %s", SPI_result_code_string(ret));
	SPI_finish();
}

/* Inserts a checked event into cdp.events and returns its event_id. */
int64
insert_event(const Event *ev)
{
	Datum		values[N_FIELDS];
	char		nulls[N_FIELDS];
	int			ret;
	int64		id;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (insert_plan == NULL)
	{
		Oid			types[N_FIELDS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, NUMERICOID, TEXTOID};
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO cdp.events (occurred_at, channel, type, identifiers, "
									   "properties, amount, source) VALUES ($1, $2, $3, $4, coalesce($5, '{}'), $6, $7) "
									   "RETURNING event_id", N_FIELDS, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the event insert: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_plan = plan;
	}
	values[0] = TimestampTzGetDatum(ev->occurred_at);
	values[1] = PointerGetDatum(ev->channel);
	values[2] = PointerGetDatum(ev->type);
	values[3] = JsonbPGetDatum(ev->identifiers);
	values[4] = PointerGetDatum(ev->properties);
	values[5] = PointerGetDatum(ev->amount);
	values[6] = PointerGetDatum(ev->source);
	nulls[0] = ev->has_occurred_at ? ' ' : 'n';
	nulls[1] = ev->channel ? ' ' : 'n';
	nulls[2] = ev->type ? ' ' : 'n';
	nulls[3] = ev->identifiers ? ' ' : 'n';
	nulls[4] = ev->properties ? ' ' : 'n';
	nulls[5] = ev->amount ? ' ' : 'n';
	nulls[6] = ev->source ? ' ' : 'n';
	ret = SPI_execute_plan(insert_plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not insert an event: %s", SPI_result_code_string(ret));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

/* --- SQL-callable functions --------------------------------------------- */

/* Reads the event fields from arguments first .. first + 6 of a function. */
static void
args_to_event(FunctionCallInfo fcinfo, int first, Event *ev)
{
	ev->has_occurred_at = !PG_ARGISNULL(first);
	ev->occurred_at = PG_ARGISNULL(first) ? 0 : PG_GETARG_TIMESTAMPTZ(first);
	ev->channel = PG_ARGISNULL(first + 1) ? NULL : PG_GETARG_TEXT_PP(first + 1);
	ev->type = PG_ARGISNULL(first + 2) ? NULL : PG_GETARG_TEXT_PP(first + 2);
	ev->identifiers = PG_ARGISNULL(first + 3) ? NULL : PG_GETARG_JSONB_P(first + 3);
	ev->properties = PG_ARGISNULL(first + 4) ? NULL : PG_GETARG_JSONB_P(first + 4);
	ev->amount = PG_ARGISNULL(first + 5) ? NULL : PG_GETARG_NUMERIC(first + 5);
	ev->source = PG_ARGISNULL(first + 6) ? NULL : PG_GETARG_TEXT_PP(first + 6);
}

/* Checks that a function runs as the kind of trigger it was written for. */
TriggerData *
trigger_data(FunctionCallInfo fcinfo, const char *fname, TriggerEvent timing, bool for_row)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		(td->tg_event & TRIGGER_EVENT_TIMINGMASK) != timing ||
		(TRIGGER_FIRED_FOR_ROW(td->tg_event) != 0) != for_row ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired %s INSERT FOR EACH %s", fname,
						timing == TRIGGER_EVENT_AFTER ? "AFTER" : "INSTEAD OF",
						for_row ? "ROW" : "STATEMENT")));
	return td;
}

/* --- rows to purge at the end of the statement --------------------------- */

/* A row of cdp.events that was quarantined and must be deleted. */
typedef struct PendingRow
{
	int64		event_id;
	bool		has_occurred_at;
	TimestampTz occurred_at;
	int			nest_level;		/* subtransaction that inserted it */
} PendingRow;

static PendingRow *pending = NULL;
static int	n_pending = 0;
static int	max_pending = 0;
static bool xact_callbacks_registered = false;

/* Forgets every pending row at transaction end (commit or abort). */
static void
pending_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		n_pending = 0;
}

/* Forgets the pending rows of a subtransaction that aborts. */
static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		int			level = GetCurrentTransactionNestLevel();

		while (n_pending > 0 && pending[n_pending - 1].nest_level >= level)
			n_pending--;
	}
}

/* Remembers a quarantined row for deletion at the end of its statement. */
static void
remember_rejected_row(int64 event_id, const Event *ev)
{
	if (!xact_callbacks_registered)
	{
		RegisterXactCallback(pending_xact_callback, NULL);
		RegisterSubXactCallback(pending_subxact_callback, NULL);
		xact_callbacks_registered = true;
	}
	if (n_pending == max_pending)
	{
		int			newmax = max_pending == 0 ? 64 : max_pending * 2;

		pending = pending == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(PendingRow) * newmax)
			: repalloc(pending, sizeof(PendingRow) * newmax);
		max_pending = newmax;
	}
	pending[n_pending].event_id = event_id;
	pending[n_pending].has_occurred_at = ev->has_occurred_at;
	pending[n_pending].occurred_at = ev->occurred_at;
	pending[n_pending].nest_level = GetCurrentTransactionNestLevel();
	n_pending++;
}

/*
 * cdp.accept_event(event_id, occurred_at, ...): the CHECK of cdp.events.
 * Always true; an invalid row is quarantined and remembered for deletion.
 */
Datum
cdp_accept_event(PG_FUNCTION_ARGS)
{
	Event		ev;
	Problem		p;

	args_to_event(fcinfo, 1, &ev);
	/* event_id is NOT NULL, checked before this CHECK */
	Assert(!PG_ARGISNULL(0));
	if (!check_event(&ev, &p))
	{
		quarantine(&p, ev.source, event_to_jsonb(&ev));
		remember_rejected_row(PG_GETARG_INT64(0), &ev);
	}
	else if (cdp_stitch_on_ingest && check_function_bodies)
	{
		/*
		 * pg_restore sets check_function_bodies off: restored events are
		 * not stitched again, their identity tables come from the dump.
		 */
		cdp_stitch_remember(PG_GETARG_INT64(0), ev.occurred_at, ev.identifiers);
	}
	PG_RETURN_BOOL(true);
}

/*
 * Deletes the rows quarantined during the statement, and says how many.
 */
static void
purge_rejected_rows(void)
{
	int			start = 0;
	int			n;
	int			i;
	int64		deleted = 0;
	Datum	   *ids;
	Datum	   *times;
	int			n_times = 0;
	int64		min_id = PG_INT64_MAX;
	int64		max_id = PG_INT64_MIN;
	int			level = GetCurrentTransactionNestLevel();
	Datum		values[4];
	Oid			types[4] = {INT8ARRAYOID, INT8OID, INT8OID, TIMESTAMPTZARRAYOID};
	int			ret;

	/* only rows of this (sub)transaction level or deeper, i.e. this statement */
	while (start < n_pending && pending[start].nest_level < level)
		start++;
	n = n_pending - start;
	if (n == 0)
		return;

	ids = palloc(sizeof(Datum) * n);
	times = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		const PendingRow *r = &pending[start + i];

		ids[i] = Int64GetDatum(r->event_id);
		min_id = Min(min_id, r->event_id);
		max_id = Max(max_id, r->event_id);
		if (r->has_occurred_at)
			times[n_times++] = TimestampTzGetDatum(r->occurred_at);
	}
	n_pending = start;

	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = Int64GetDatum(min_id);
	values[2] = Int64GetDatum(max_id);
	values[3] = PointerGetDatum(construct_array(times, n_times, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* occurred_at prunes partitions, the id range uses the BRIN index */
	ret = SPI_execute_with_args("DELETE FROM cdp.events "
								"WHERE event_id BETWEEN $2 AND $3 AND event_id = ANY ($1) "
								"AND (occurred_at = ANY ($4) OR occurred_at IS NULL)",
								4, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not remove rejected events: %s", SPI_result_code_string(ret));
	deleted = (int64) SPI_processed;
	SPI_finish();

	ereport(NOTICE,
			(errmsg("%d %s rejected and moved to cdp.rejected_events", n,
					n == 1 ? "event was" : "events were"),
			 errhint("SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id DESC LIMIT %d;", n)));
	if (deleted != n)
		elog(WARNING, "%d events were rejected but " INT64_FORMAT " were removed from cdp.events",
			 n, deleted);
}

/*
 * AFTER INSERT statement trigger of cdp.events and its partitions: removes
 * the rows quarantined during the statement, then stitches the identities
 * of the rows stored.
 */
Datum
cdp_events_after_insert(PG_FUNCTION_ARGS)
{
	(void) trigger_data(fcinfo, "cdp.events_after_insert()", TRIGGER_EVENT_AFTER, false);
	purge_rejected_rows();
	cdp_stitch_pending();
	return PointerGetDatum(NULL);
}

/*
 * AFTER statement trigger of the configuration tables (channels, identity
 * rules, blocklist, decisions by hand): every session drops its cached copy
 * at commit.
 */
Datum
cdp_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp.config_changed() must be fired as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
	return PointerGetDatum(NULL);
}


/* cdp.track(...): records one event and returns its id, or raises. */
Datum
cdp_track(PG_FUNCTION_ARGS)
{
	Event		ev;
	Problem		p;
	int64		id;

	args_to_event(fcinfo, 0, &ev);
	if (!check_event(&ev, &p))
		raise_problem(&p);
	id = insert_event(&ev);
	PG_RETURN_INT64(id);
}

/* cdp.check_event(...): why an event would be refused, or NULLs. */
Datum
cdp_check_event(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {true, true};
	Event		ev;
	Problem		p;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	args_to_event(fcinfo, 0, &ev);
	if (!check_event(&ev, &p))
	{
		values[0] = CStringGetTextDatum(cdp_problem_code(p.code));
		values[1] = CStringGetTextDatum(p.message);
		nulls[0] = nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

