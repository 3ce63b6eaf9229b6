/*
 * events.c
 *	  The rules of the event store and the paths that take typed events: the
 *	  row check of cdp.events (COPY, INSERT), cdp.track and cdp.check_event.
 *	  The text entry points (loader view, cdp.ingest) are in ingest.c.
 *
 * Every path into cdp.events goes through cdp_event_check(), so one set of rules
 * (src/core/event_rules.c) decides what is accepted.  cdp.track raises an
 * error.  COPY and INSERT divert a bad row to cdp.rejected_events with its
 * raw form and the reason: the CHECK constraint events_accept calls
 * cdp_accept_event() for every row.  It always answers true (a failed CHECK
 * would abort the whole load); for an invalid row it writes the quarantine
 * row and hands the event to the statement's end (event_batch.c), which
 * the AFTER STATEMENT trigger cdp_events_after_insert() runs: it deletes
 * the quarantined rows and the retries, then stitches the stored rows.  A
 * CHECK, unlike a BEFORE ROW trigger, leaves COPY's multi-row inserts on,
 * and so does the default of event_id (cdp_issue_event_id).
 *
 * Per-backend state: the sorted names of cdp.channels and cdp.event_types,
 * dropped by a relcache invalidation (the statement triggers on those tables
 * send one, so every session sees a registry change at commit), and the
 * event ids issued and not yet taken by the row check.
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
#include "nodes/primnodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
PG_FUNCTION_INFO_V1(cdp_issue_event_id);
PG_FUNCTION_INFO_V1(cdp_move_default_events);

const char *const cdp_field_names[N_FIELDS] = {
	"occurred_at", "channel", "type", "identifiers", "properties", "amount", "source", "message_id"
};

/* 1970-01-01 00:00 UTC in PostgreSQL's microseconds since 2000-01-01. */
#define UNIX_EPOCH_TIMESTAMPTZ \
	((TimestampTz) (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY)

/* The largest raw row the quarantine keeps whole (64 kB). */
#define CDP_QUARANTINE_MAX_RAW 65536

/*
 * A registry table read into a sorted array of names, kept per backend until
 * a relcache invalidation of the table (its statement trigger
 * cdp.config_changed sends one, so every session sees a change at commit).
 */
typedef struct Registry
{
	const char *table;			/* in schema cdp */
	const char *query;			/* its names, sorted in C order */
	MemoryContext cxt;
	Oid			relid;
	bool		valid;
	const char **names;
	int			n;
	char	   *list;			/* "app, call_center, ..." for hints */
} Registry;

static Registry channels = {"channels", "SELECT channel FROM cdp.channels ORDER BY channel COLLATE \"C\""};
static Registry event_types = {"event_types", "SELECT type FROM cdp.event_types ORDER BY type COLLATE \"C\""};

static SPIPlanPtr insert_plans[2];	/* without, with a message id */
static SPIPlanPtr reject_plan = NULL;

/* Marks the registries stale when their table is invalidated. */
static void
registry_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == channels.relid)
		channels.valid = false;
	if (relid == InvalidOid || relid == event_types.relid)
		event_types.valid = false;
}

/* Reads a registry table into its sorted array if stale. */
static void
load_registry(Registry *r)
{
	static bool callback_registered = false;
	uint64		i;
	StringInfoData list;

	if (r->valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(registry_invalidated, (Datum) 0);
		callback_registered = true;
	}
	if (r->cxt == NULL)
		r->cxt = AllocSetContextCreate(TopMemoryContext, "cdp registry", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(r->cxt);
	r->names = NULL;
	r->n = 0;
	r->list = NULL;
	r->relid = get_relname_relid(r->table, get_namespace_oid("cdp", false));
	if (!OidIsValid(r->relid))
		elog(ERROR, "table cdp.%s does not exist", r->table);

	/* Set first: an invalidation that arrives while reading clears it again. */
	r->valid = true;
	PG_TRY();
	{
		cdp_spi_connect();
		cdp_spi_run(r->query, 0, NULL, NULL, SPI_OK_SELECT);
		r->names = MemoryContextAllocZero(r->cxt, sizeof(char *) * (SPI_processed + 1));
		initStringInfo(&list);
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			r->names[i] = MemoryContextStrdup(r->cxt, name);
			appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", name);
		}
		r->n = (int) SPI_processed;
		r->list = MemoryContextStrdup(r->cxt, list.data);
		cdp_spi_finish();
	}
	PG_CATCH();
	{
		r->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Whether a name is in a registry. */
static bool
registry_has(Registry *r, text *name)
{
	load_registry(r);
	return cdp_find_name(r->names, r->n, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) >= 0;
}

/* Whether an event type is registered in cdp.event_types. */
bool
cdp_event_type_known(text *type)
{
	return registry_has(&event_types, type);
}

/* Sets *p to a problem with a formatted message; returns false for chaining. */
bool
cdp_fail(Problem *p, CdpProblem code, const char *hint, const char *fmt,...)
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
cdp_shown(const char *s, int len)
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
	return cdp_shown(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* A JSON value's type name, for messages. */
const char *
cdp_jbv_kind(const JsonbValue *v)
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
cdp_json_kind(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbExtractScalar(&jb->root, &v);
		return cdp_jbv_kind(&v);
	}
	return JB_ROOT_IS_ARRAY(jb) ? "an array" : "an object";
}

/* An amount for a message, at most 80 bytes. */
static char *
shown_numeric(Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));

	return cdp_shown(s, strlen(s));
}

/* Whether |amount| <= cdp.max_amount (amount finite). */
static bool
amount_in_range(Numeric amount)
{
	static double cached_max = -1;
	static Numeric cached = NULL;
	Numeric		a = DatumGetNumeric(DirectFunctionCall1(numeric_abs, NumericGetDatum(amount)));

	if (cached == NULL || cached_max != cdp_max_amount)
	{
		Numeric		m = DatumGetNumeric(DirectFunctionCall1(float8_numeric, Float8GetDatum(cdp_max_amount)));
		Numeric		copy = MemoryContextAlloc(TopMemoryContext, VARSIZE(m));

		memcpy(copy, m, VARSIZE(m));
		if (cached != NULL)
			pfree(cached);
		cached = copy;
		cached_max = cdp_max_amount;
	}
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(cached))) <= 0;
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
		return cdp_fail(p, CDP_INVALID_IDENTIFIERS, hint,
					"identifiers must be a JSON object, not %s", cdp_json_kind(ids));
	if (count == 0)
		return cdp_fail(p, CDP_INVALID_IDENTIFIERS, hint, "identifiers must not be empty");
	if (count > CDP_MAX_IDENTIFIERS)
		return cdp_fail(p, CDP_INVALID_IDENTIFIERS, NULL,
					"an event may carry at most %d identifiers, not %d", CDP_MAX_IDENTIFIERS, count);

	it = JsonbIteratorInit(&ids->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		if (cdp_check_identifier_kind(key.val.string.val, key.val.string.len, &why) != CDP_OK)
			return cdp_fail(p, CDP_INVALID_IDENTIFIER_KIND,
						"Identifier kinds are lower-case words such as email, phone, cookie, device_id, loyalty_card, customer_id.",
						"invalid identifier kind \"%s\": it %s",
						cdp_shown(key.val.string.val, key.val.string.len), why);
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		if (val.type != jbvString)
			return cdp_fail(p, CDP_INVALID_IDENTIFIER_VALUE, hint,
						"identifier \"%s\" must be a string",
						cdp_shown(key.val.string.val, key.val.string.len));
		if (cdp_check_identifier_value(val.val.string.val, val.val.string.len, &why) != CDP_OK)
			return cdp_fail(p, CDP_INVALID_IDENTIFIER_VALUE, NULL,
						"invalid value \"%s\" for identifier \"%s\": it %s",
						cdp_shown(val.val.string.val, val.val.string.len),
						cdp_shown(key.val.string.val, key.val.string.len), why);
		if (cdp_refuse_erased &&
			cdp_identity_erased(key.val.string.val, key.val.string.len, val.val.string.val, val.val.string.len))
			return cdp_fail(p, CDP_ERASED,
						"The person was erased on request (cdp.forget, cdp.erasures); an administrator may set cdp.refuse_erased = off to collect it again after new consent.",
						"identifier \"%s\" was erased on request",
						cdp_shown(key.val.string.val, key.val.string.len));
	}
	return true;
}

/* Applies every rule to an event; on failure fills *p and returns false. */
bool
cdp_event_check(const Event *ev, Problem *p)
{
	const char *why;

	if (!ev->has_occurred_at)
		return cdp_fail(p, CDP_MISSING_OCCURRED_AT, "Every event needs the time it happened.",
					"occurred_at is missing");
	switch (cdp_check_occurred_at(ev->occurred_at, GetCurrentTransactionStartTimestamp(),
								  (int64) cdp_max_clock_skew * USECS_PER_SEC,
								  UNIX_EPOCH_TIMESTAMPTZ))
	{
		case CDP_FUTURE_OCCURRED_AT:
			return cdp_fail(p, CDP_FUTURE_OCCURRED_AT,
						"Check the clock and time zone of the source, or raise cdp.max_clock_skew.",
						"occurred_at %s is in the future, more than cdp.max_clock_skew (%d s) after it was received",
						timestamptz_to_str(ev->occurred_at), cdp_max_clock_skew);
		case CDP_ANCIENT_OCCURRED_AT:
			return cdp_fail(p, CDP_ANCIENT_OCCURRED_AT,
						"A missing or zero time in the source often shows up as 1970-01-01.",
						"occurred_at %s is not after 1970-01-01 00:00:00 UTC",
						timestamptz_to_str(ev->occurred_at));
		default:
			break;
	}

	if (ev->channel == NULL)
	{
		load_registry(&channels);
		return cdp_fail(p, CDP_MISSING_CHANNEL, psprintf("Known channels: %s.", channels.list),
					"channel is missing");
	}
	if (!registry_has(&channels, ev->channel))
		return cdp_fail(p, CDP_UNKNOWN_CHANNEL,
					psprintf("Known channels: %s. Register new ones in cdp.channels.", channels.list),
					"unknown channel \"%s\"", shown_text(ev->channel));

	if (ev->type == NULL)
		return cdp_fail(p, CDP_MISSING_TYPE, "Standard types are listed in cdp.event_types.",
					"type is missing");
	if (cdp_check_type(VARDATA_ANY(ev->type), VARSIZE_ANY_EXHDR(ev->type), &why) != CDP_OK)
		return cdp_fail(p, CDP_INVALID_TYPE, "Standard types are listed in cdp.event_types.",
					"invalid type \"%s\": it %s", shown_text(ev->type), why);
	if (cdp_unknown_event_types == CDP_UNKNOWN_TYPES_QUARANTINE && !cdp_event_type_known(ev->type))
		return cdp_fail(p, CDP_UNKNOWN_TYPE,
					"Register the type in cdp.event_types, or correct the source (cdp.unknown_event_types is quarantine).",
					"unknown type \"%s\"", shown_text(ev->type));

	if (ev->identifiers == NULL)
		return cdp_fail(p, CDP_MISSING_IDENTIFIERS,
					"Every event needs at least one identifier, such as {\"cookie\": \"c-81f\"}.",
					"identifiers are missing");
	if (!check_identifiers(ev->identifiers, p))
		return false;

	if (ev->properties != NULL && !JB_ROOT_IS_OBJECT(ev->properties))
		return cdp_fail(p, CDP_INVALID_PROPERTIES, "Use {} for an event without properties.",
					"properties must be a JSON object, not %s", cdp_json_kind(ev->properties));

	if (ev->amount != NULL && (numeric_is_nan(ev->amount) || numeric_is_inf(ev->amount)))
		return cdp_fail(p, CDP_INVALID_AMOUNT, "An amount is a finite number of money, such as 19.99.",
					"invalid amount \"%s\": it is not a finite number",
					DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(ev->amount))));
	if (ev->amount != NULL && !amount_in_range(ev->amount))
		return cdp_fail(p, CDP_AMOUNT_OUT_OF_RANGE,
					"An amount is the value of one purchase or refund; raise cdp.max_amount if this one is real.",
					"amount %s is out of range: its absolute value exceeds cdp.max_amount (%g)",
					shown_numeric(ev->amount), cdp_max_amount);

	if (ev->source != NULL &&
		cdp_check_source(VARDATA_ANY(ev->source), VARSIZE_ANY_EXHDR(ev->source), &why) != CDP_OK)
		return cdp_fail(p, CDP_INVALID_SOURCE, NULL,
					"invalid source \"%s\": it %s", shown_text(ev->source), why);
	if (ev->message_id != NULL &&
		cdp_check_message_id(VARDATA_ANY(ev->message_id), VARSIZE_ANY_EXHDR(ev->message_id), &why) != CDP_OK)
		return cdp_fail(p, CDP_INVALID_MESSAGE_ID,
					"A message id is the sender's key of the event (1 to 255 characters), the same on every retry.",
					"invalid message_id \"%s\": it %s", shown_text(ev->message_id), why);
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
cdp_push_string(JsonbParseState **st, const char *key, const char *val, int len)
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
		cdp_push_string(st, key, NULL, 0);
	else
		cdp_push_string(st, key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* Adds key: a JSON document (or null). */
static void
push_jsonb(JsonbParseState **st, const char *key, Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL)
	{
		cdp_push_string(st, key, NULL, 0);
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
Jsonb *
cdp_event_to_jsonb(const Event *ev)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	JsonbValue *res;
	char	   *ts = ev->has_occurred_at ? pstrdup(timestamptz_to_str(ev->occurred_at)) : NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	cdp_push_string(&st, "occurred_at", ts, ts ? strlen(ts) : 0);
	push_text(&st, "channel", ev->channel);
	push_text(&st, "type", ev->type);
	push_jsonb(&st, "identifiers", ev->identifiers);
	push_jsonb(&st, "properties", ev->properties);
	if (ev->amount == NULL || numeric_is_nan(ev->amount) || numeric_is_inf(ev->amount))
	{
		/* JSON has no NaN nor infinity: keep their text */
		char	   *s = ev->amount ? DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(ev->amount))) : NULL;

		cdp_push_string(&st, "amount", s, s ? strlen(s) : 0);
	}
	else
	{
		push_key(&st, "amount");
		v.type = jbvNumeric;
		v.val.numeric = ev->amount;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	push_text(&st, "source", ev->source);
	if (ev->message_id != NULL)
		push_text(&st, "message_id", ev->message_id);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * A raw row too large to keep whole: {"truncated": true, "bytes": N,
 * "head": the first CDP_QUARANTINE_MAX_RAW bytes of its text}.
 */
static Jsonb *
truncated_raw(Jsonb *raw)
{
	char	   *text = JsonbToCString(NULL, &raw->root, VARSIZE(raw));
	int			len = strlen(text);
	int			cut = pg_mbcliplen(text, len, CDP_QUARANTINE_MAX_RAW);
	JsonbParseState *st = NULL;
	JsonbValue	v;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "truncated");
	v.type = jbvBool;
	v.val.boolean = true;
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_key(&st, "bytes");
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(len);
	pushJsonbValue(&st, WJB_VALUE, &v);
	cdp_push_string(&st, "head", text, cut);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * Stores a refused row in cdp.rejected_events; a raw row of more than
 * CDP_QUARANTINE_MAX_RAW bytes keeps only its head.
 */
void
cdp_quarantine(const Problem *p, text *source, Jsonb *raw)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			ret;

	cdp_spi_connect();
	if (reject_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
		/* an event of an erased person keeps none of its personal data */
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO cdp.rejected_events (reason_code, reason, source, raw) "
									   "VALUES ($1, $2, $3, CASE WHEN $1 = 'erased' THEN "
									   "jsonb_build_object('redacted', 'it carried an identifier erased on request', "
									   "'occurred_at', $4->'occurred_at', 'channel', $4->'channel', 'type', $4->'type') "
									   "ELSE $4 END)", 4, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the quarantine insert: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		reject_plan = plan;
	}
	values[0] = CStringGetTextDatum(cdp_problem_code(p->code));
	values[1] = CStringGetTextDatum(p->message);
	values[2] = source ? PointerGetDatum(source) : (Datum) 0;
	nulls[2] = source ? ' ' : 'n';
	values[3] = JsonbPGetDatum(VARSIZE(raw) > CDP_QUARANTINE_MAX_RAW ? truncated_raw(raw) : raw);
	ret = SPI_execute_plan(reject_plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not quarantine an event: %s", SPI_result_code_string(ret));
	cdp_spi_finish();
}

/*
 * Inserts a checked event into cdp.events and returns its event_id.  An
 * event without a message id leaves that column out: the 0.1.0 schema (this
 * library installed, ALTER EXTENSION cdp UPDATE not yet run) has none.
 */
int64
cdp_insert_event(const Event *ev)
{
	int			keyed = ev->message_id != NULL;
	int			n = keyed ? N_FIELDS : N_FIELDS - 1;
	Datum		values[N_FIELDS];
	char		nulls[N_FIELDS];
	int			ret;
	int64		id;
	bool		isnull;

	cdp_spi_connect();
	if (insert_plans[keyed] == NULL)
	{
		Oid			types[N_FIELDS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, NUMERICOID, TEXTOID, TEXTOID};
		SPIPlanPtr	plan = SPI_prepare(keyed ?
									   "INSERT INTO cdp.events (occurred_at, channel, type, identifiers, "
									   "properties, amount, source, message_id) "
									   "VALUES ($1, $2, $3, $4, COALESCE($5, '{}'), $6, $7, $8) "
									   "RETURNING event_id" :
									   "INSERT INTO cdp.events (occurred_at, channel, type, identifiers, "
									   "properties, amount, source) "
									   "VALUES ($1, $2, $3, $4, COALESCE($5, '{}'), $6, $7) "
									   "RETURNING event_id", n, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the event insert: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_plans[keyed] = plan;
	}
	values[0] = TimestampTzGetDatum(ev->occurred_at);
	values[1] = PointerGetDatum(ev->channel);
	values[2] = PointerGetDatum(ev->type);
	values[3] = JsonbPGetDatum(ev->identifiers);
	values[4] = PointerGetDatum(ev->properties);
	values[5] = PointerGetDatum(ev->amount);
	values[6] = PointerGetDatum(ev->source);
	values[7] = PointerGetDatum(ev->message_id);
	nulls[0] = ev->has_occurred_at ? ' ' : 'n';
	nulls[1] = ev->channel ? ' ' : 'n';
	nulls[2] = ev->type ? ' ' : 'n';
	nulls[3] = ev->identifiers ? ' ' : 'n';
	nulls[4] = ev->properties ? ' ' : 'n';
	nulls[5] = ev->amount ? ' ' : 'n';
	nulls[6] = ev->source ? ' ' : 'n';
	nulls[7] = ev->message_id ? ' ' : 'n';
	ret = SPI_execute_plan(insert_plans[keyed], values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not insert an event: %s", SPI_result_code_string(ret));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	cdp_spi_finish();
	return id;
}

/*
 * cdp_insert_event, leaving the end of the statement (claims, purges,
 * stitching) to the caller: its insert statement does not end the batch.
 */
int64
cdp_insert_event_deferred(const Event *ev)
{
	volatile int64 id = 0;

	cdp_batch_defer();
	PG_TRY();
	{
		id = cdp_insert_event(ev);
	}
	PG_FINALLY();
	{
		cdp_batch_undefer();
	}
	PG_END_TRY();
	return id;
}

/* --- SQL-callable functions --------------------------------------------- */

/*
 * Reads the event fields from arguments first .. first + 7 of a function
 * (message_id, the last, only if the function has it).
 */
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
	ev->message_id = PG_NARGS() <= first + 7 || PG_ARGISNULL(first + 7) ? NULL : PG_GETARG_TEXT_PP(first + 7);
}

/* Checks that a function runs as the kind of trigger it was written for. */
TriggerData *
cdp_trigger_data(FunctionCallInfo fcinfo, const char *fname, TriggerEvent timing, bool for_row)
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

/* --- ids, the row check, the statement's end --------------------------------- */

/*
 * Event ids issued by cdp.issue_event_id (in the default of event_id) and
 * not yet taken by the row check: a row whose event_id is not among them was
 * given its id by the caller, which the row check refuses (a supplied id
 * could name a stored event, which the statement's purge would then delete).
 * A few suffice: a row takes its id right after its default is computed.
 */
#define N_ISSUED 16
static int64 issued[N_ISSUED];
static int	n_issued = 0;
static bool moving_events = false;	/* cdp.move_default_events is at work */

/* Whether an expression is issue_event_id(nextval('cdp.events_event_id_seq')). */
static bool
issued_from_sequence(Node *expr)
{
	FuncExpr   *f = (FuncExpr *) expr;
	FuncExpr   *arg;
	Const	   *seq;

	if (expr == NULL || !IsA(expr, FuncExpr) || list_length(f->args) != 1)
		return false;
	arg = linitial(f->args);
	if (!IsA(arg, FuncExpr) || arg->funcid != F_NEXTVAL || list_length(arg->args) != 1)
		return false;
	seq = linitial(arg->args);
	return IsA(seq, Const) && !seq->constisnull &&
		DatumGetObjectId(seq->constvalue) ==
		get_relname_relid("events_event_id_seq", get_namespace_oid("cdp", false));
}

/*
 * cdp.issue_event_id(id): the default of cdp.events.event_id is
 * cdp.issue_event_id(nextval(...)); remembers the id and returns it.  It is
 * declared STABLE, not VOLATILE: PostgreSQL makes COPY insert row by row
 * when a column default holds a volatile function other than nextval (2.4
 * times the WAL records: 160,932 against 66,706 for 100,000 demo events);
 * this one only notes its argument in the backend's memory, and is called
 * once per row like any default.  It takes nothing but the sequence's
 * nextval, checked once per expression (issued_from_sequence), so that no
 * caller can have an id of its choosing pass as issued.
 */
Datum
cdp_issue_event_id(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);

	if (fcinfo->flinfo->fn_extra == NULL)
	{
		if (!issued_from_sequence(fcinfo->flinfo->fn_expr))
			ereport(ERROR,
					(errcode(ERRCODE_GENERATED_ALWAYS),
					 errmsg("cdp.issue_event_id takes only nextval('cdp.events_event_id_seq')"),
					 errdetail("It is the default of cdp.events.event_id."),
					 errhint("Leave event_id out of the column list; cdp assigns it.")));
		fcinfo->flinfo->fn_extra = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, 1);
	}
	if (n_issued == N_ISSUED)
	{
		memmove(issued, issued + 1, sizeof(int64) * (N_ISSUED - 1));
		n_issued--;
	}
	issued[n_issued++] = id;
	PG_RETURN_INT64(id);
}

/* Takes an issued id; false if the id was not issued (or already taken). */
static bool
take_issued(int64 id)
{
	int			i;

	for (i = n_issued - 1; i >= 0; i--)
		if (issued[i] == id)
		{
			memmove(issued + i, issued + i + 1, sizeof(int64) * (n_issued - i - 1));
			n_issued--;
			return true;
		}
	return false;
}

/*
 * Whether rows come with ids of their own: pg_restore (which turns
 * check_function_bodies off) and logical replication (session_replication_role
 * replica) copy stored events.  Only a superuser or the owner of cdp.events
 * may (the owner could drop the check anyway): any role can turn
 * check_function_bodies off, and that must not switch off the row check.
 */
static bool
copying_stored_events(void)
{
	/*
	 * The role outside any SECURITY DEFINER function: cdp.track and
	 * cdp.ingest run as the owner, and a loader calling them must not
	 * switch the check off.
	 */
	Oid			role = GetOuterUserId();

	return (!check_function_bodies || SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA) &&
		(superuser_arg(role) ||
		 pg_class_ownercheck(get_relname_relid("events", get_namespace_oid("cdp", false)), role));
}

/*
 * cdp.accept_event(event_id, occurred_at, ..., message_id): the CHECK of
 * cdp.events.  Always true; an invalid row is quarantined and remembered for
 * deletion at the end of the statement, a valid one for its message id and
 * stitching.  Rows moved between partitions are stored facts: not judged.
 */
Datum
cdp_accept_event(PG_FUNCTION_ARGS)
{
	Event		ev;
	Problem		p;
	int64		event_id;
	bool		supplied;

	if (moving_events)
		PG_RETURN_BOOL(true);
	/* event_id is NOT NULL, checked before this CHECK */
	event_id = PG_GETARG_INT64(0);
	supplied = !take_issued(event_id);
	if (copying_stored_events())
		PG_RETURN_BOOL(true);

	/*
	 * Under the 0.1.0 schema (the check has no message_id argument: this
	 * library installed, ALTER EXTENSION cdp UPDATE not yet run) event_id
	 * defaults to nextval alone and no id is issued.
	 */
	if (PG_NARGS() > 8 && supplied)
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("cannot insert an event with an event_id of its own (" INT64_FORMAT ")", event_id),
				 errdetail("cdp assigns event ids; a supplied one could repeat a stored event's."),
				 errhint("Leave event_id out of the column list. To make retries safe, give each event a message_id.")));
	args_to_event(fcinfo, 1, &ev);
	if (!cdp_event_check(&ev, &p))
	{
		cdp_quarantine(&p, ev.source, cdp_event_to_jsonb(&ev));
		cdp_batch_reject(event_id, &ev);
	}
	else
		cdp_batch_accept(event_id, &ev);
	PG_RETURN_BOOL(true);
}

/* Whether cdp.move_default_events is moving stored events; see events.h. */
bool
cdp_events_moving(void)
{
	return moving_events;
}

/*
 * cdp.move_default_events(part, from_time, to_time): moves the events of
 * [from_time, to_time) from cdp.events_default to part, a table shaped like
 * cdp.events (cdp.ensure_partitions, before attaching it).  A move is not a
 * load: the row check lets the rows through unjudged, unstitched.
 */
Datum
cdp_move_default_events(PG_FUNCTION_ARGS)
{
	Oid			part = PG_GETARG_OID(0);
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2] = {PG_GETARG_DATUM(1), PG_GETARG_DATUM(2)};
	char	   *rel = get_rel_name(part);
	char	   *sql;
	uint64		moved = 0;

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", part)));
	sql = psprintf("WITH moved AS (DELETE FROM cdp.events_default "
				   "WHERE occurred_at >= $1 AND occurred_at < $2 "
				   "RETURNING event_id, occurred_at, received_at, channel, type, identifiers, "
				   "properties, amount, source, message_id) "
				   "INSERT INTO %s (event_id, occurred_at, received_at, channel, type, identifiers, "
				   "properties, amount, source, message_id) SELECT * FROM moved",
				   quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)), rel));
	cdp_spi_connect();
	moving_events = true;
	PG_TRY();
	{
		moved = cdp_spi_run(sql, 2, types, values, SPI_OK_INSERT);
	}
	PG_FINALLY();
	{
		moving_events = false;
	}
	PG_END_TRY();
	cdp_spi_finish();
	PG_RETURN_INT64((int64) moved);
}

/*
 * AFTER INSERT statement trigger of cdp.events, its partitions and the
 * loader view: the statement's end (event_batch.c).
 */
Datum
cdp_events_after_insert(PG_FUNCTION_ARGS)
{
	(void) cdp_trigger_data(fcinfo, "cdp.events_after_insert()", TRIGGER_EVENT_AFTER, false);
	cdp_batch_end();
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


/*
 * The event that holds a message id after a load (id, if it was stored;
 * the original, with a notice, if it was a retry).
 */
static int64
stored_message(text *message_id, int64 id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(message_id)};
	int64		original = id;
	bool		isnull;

	cdp_spi_connect();
	if (cdp_spi_run("SELECT event_id FROM cdp.event_messages WHERE message_id = $1",
					1, types, values, SPI_OK_SELECT) == 1)
		original = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	cdp_spi_finish();
	if (original != id)
		ereport(NOTICE,
				(errmsg("message_id \"%s\" was already stored as event " INT64_FORMAT "; this retry was not stored again",
						shown_text(message_id), original)));
	return original;
}

/* cdp.track(...): records one event and returns its id, or raises. */
Datum
cdp_track(PG_FUNCTION_ARGS)
{
	Event		ev;
	Problem		p;
	int64		id;

	args_to_event(fcinfo, 0, &ev);
	if (!cdp_event_check(&ev, &p))
		raise_problem(&p);
	/* the statement's end runs here, after the insert */
	id = cdp_insert_event_deferred(&ev);
	(void) cdp_batch_end();
	if (ev.message_id != NULL)
		id = stored_message(ev.message_id, id);
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
	if (!cdp_event_check(&ev, &p))
	{
		values[0] = CStringGetTextDatum(cdp_problem_code(p.code));
		values[1] = CStringGetTextDatum(p.message);
		nulls[0] = nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

