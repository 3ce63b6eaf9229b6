/*
 * events.c
 *	  Glue of the event store: the row check of cdp.events, the raw loader
 *	  view cdp.event_load, cdp.track, cdp.ingest and cdp.check_event.
 *
 * Every path into cdp.events goes through check_event(), so one set of rules
 * (src/core/event_rules.c) decides what is accepted.  cdp.track raises an
 * error.  Bulk paths divert a bad row to cdp.rejected_events with its raw
 * form and the reason:
 *  - COPY and INSERT: the CHECK constraint events_accept calls
 *	  cdp_accept_event() for every row.  It always answers true (a failed
 *	  CHECK would abort the whole load); for an invalid row it writes the
 *	  quarantine row and remembers the event, and the AFTER STATEMENT trigger
 *	  cdp_events_purge() deletes the remembered rows when the statement ends.
 *	  A CHECK, unlike a BEFORE ROW trigger, leaves COPY's multi-row inserts on.
 *  - the loader view and cdp.ingest check before inserting, so that the raw
 *	  form kept is the one received.
 *
 * PostgreSQL 15 has no soft input errors: where text must be converted
 * (loader view, cdp.ingest), the input functions run in a subtransaction so
 * that a malformed value becomes a rejection instead of aborting the load.
 *
 * Per-backend state: the sorted channel names of cdp.channels and the column
 * numbers of the loader view, both dropped by relcache invalidations (the
 * statement trigger on cdp.channels sends one, so every session sees a
 * registry change at commit); and the list of rows waiting to be purged,
 * emptied at the end of each statement, at transaction end, and for the
 * entries of a subtransaction that aborts.
 */
#include "cdp.h"
#include "event_rules.h"

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
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(cdp_accept_event);
PG_FUNCTION_INFO_V1(cdp_events_purge);
PG_FUNCTION_INFO_V1(cdp_event_load_row);
PG_FUNCTION_INFO_V1(cdp_channels_changed);
PG_FUNCTION_INFO_V1(cdp_track);
PG_FUNCTION_INFO_V1(cdp_ingest);
PG_FUNCTION_INFO_V1(cdp_check_event);

/* An event with typed fields; NULL pointers are SQL NULLs. */
typedef struct Event
{
	bool		has_occurred_at;
	TimestampTz occurred_at;
	text	   *channel;
	text	   *type;
	Jsonb	   *identifiers;
	Jsonb	   *properties;
	Numeric		amount;
	text	   *source;
} Event;

/* Why an event is refused. */
typedef struct Problem
{
	CdpProblem	code;
	char	   *message;
	const char *hint;
} Problem;

/* Column numbers of the event fields in one relation (table or view). */
typedef struct EventColumns
{
	Oid			relid;			/* hash key */
	AttrNumber	occurred_at;
	AttrNumber	channel;
	AttrNumber	type;
	AttrNumber	identifiers;
	AttrNumber	properties;
	AttrNumber	amount;
	AttrNumber	source;
} EventColumns;

#define N_FIELDS 7
static const char *const field_names[N_FIELDS] = {
	"occurred_at", "channel", "type", "identifiers", "properties", "amount", "source"
};

/* 1970-01-01 00:00 UTC in PostgreSQL's microseconds since 2000-01-01. */
#define UNIX_EPOCH_TIMESTAMPTZ \
	((TimestampTz) (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY)

static MemoryContext cache_cxt = NULL;
static bool callback_registered = false;
static Oid	channels_relid = InvalidOid;
static bool channels_valid = false;
static const char **channel_names = NULL;
static int	n_channels = 0;
static char *channel_list = NULL;	/* "app, call_center, ..." for hints */
static HTAB *column_cache = NULL;

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr reject_plan = NULL;

/* Drops what a relcache invalidation makes stale. */
static void
invalidate_caches(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == channels_relid)
		channels_valid = false;
	if (column_cache != NULL)
	{
		if (relid == InvalidOid)
		{
			hash_destroy(column_cache);
			column_cache = NULL;
		}
		else
			(void) hash_search(column_cache, &relid, HASH_REMOVE, NULL);
	}
}

/* Creates the cache memory context and registers the invalidation callback once. */
static void
init_caches(void)
{
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "cdp event caches",
										  ALLOCSET_SMALL_SIZES);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(invalidate_caches, (Datum) 0);
		callback_registered = true;
	}
}

/* Reads cdp.channels into the backend's sorted channel array if stale. */
static void
load_channels(void)
{
	static MemoryContext channel_cxt = NULL;
	Oid			nsp;
	int			ret;
	uint64		i;
	StringInfoData list;

	if (channels_valid)
		return;
	init_caches();
	if (channel_cxt == NULL)
		channel_cxt = AllocSetContextCreate(cache_cxt, "cdp channels", ALLOCSET_SMALL_SIZES);
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

/* Finds the column numbers of the event fields in a relation. */
static const EventColumns *
event_columns(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	EventColumns *cols;
	bool		found;
	AttrNumber	attnums[N_FIELDS];
	int			i;

	init_caches();
	if (column_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(EventColumns);
		ctl.hcxt = cache_cxt;
		column_cache = hash_create("cdp event columns", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	cols = hash_search(column_cache, &relid, HASH_FIND, NULL);
	if (cols != NULL)
		return cols;

	for (i = 0; i < N_FIELDS; i++)
	{
		attnums[i] = SPI_fnumber(RelationGetDescr(rel), field_names[i]);
		if (attnums[i] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("relation \"%s\" has no column \"%s\"",
							RelationGetRelationName(rel), field_names[i]),
					 errhint("cdp event triggers belong on cdp.events and cdp.event_load only.")));
	}
	cols = hash_search(column_cache, &relid, HASH_ENTER, &found);
	cols->occurred_at = attnums[0];
	cols->channel = attnums[1];
	cols->type = attnums[2];
	cols->identifiers = attnums[3];
	cols->properties = attnums[4];
	cols->amount = attnums[5];
	cols->source = attnums[6];
	return cols;
}

/* Sets *p to a problem with a formatted message; returns false for chaining. */
static bool
fail(Problem *p, CdpProblem code, const char *hint, const char *fmt,...)
pg_attribute_printf(4, 5);

static bool
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
static char *
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

/* Name of the JSON type of a non-object document, for messages. */
static const char *
json_kind(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	v;

		JsonbExtractScalar(&jb->root, &v);
		switch (v.type)
		{
			case jbvNull:
				return "null";
			case jbvString:
				return "a string";
			case jbvNumeric:
				return "a number";
			case jbvBool:
				return "a boolean";
			default:
				return "a scalar";
		}
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
static bool
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

/* Adds key: string (or null) to an object being built. */
static void
push_string(JsonbParseState **st, const char *key, const char *val, int len)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
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
	JsonbValue	k;
	JsonbValue	v;

	if (jb == NULL)
	{
		push_string(st, key, NULL, 0);
		return;
	}
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
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

/* The typed event as a JSON object, for rows refused by the trigger. */
static Jsonb *
event_to_jsonb(const Event *ev)
{
	JsonbParseState *st = NULL;
	JsonbValue	k;
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
		k.type = jbvString;
		k.val.string.val = "amount";
		k.val.string.len = 6;
		pushJsonbValue(&st, WJB_KEY, &k);
		v.type = jbvNumeric;
		v.val.numeric = ev->amount;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	push_text(&st, "source", ev->source);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* Stores a refused row in cdp.rejected_events. */
static void
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
static int64
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

/* --- converting text input safely ---------------------------------------- */

/* One text value to convert, and where its result goes. */
typedef struct TextInput
{
	const char *field;
	const char *text;			/* NULL: nothing to convert */
	Oid			type;			/* TIMESTAMPTZOID, JSONBOID or NUMERICOID */
	CdpProblem	problem;
	const char *hint;
	Datum		result;
} TextInput;

/* Calls the input function of one of the types an event field has. */
static Datum
input_value(Oid type, const char *s)
{
	switch (type)
	{
		case TIMESTAMPTZOID:
			return DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
									   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		case JSONBOID:
			return DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
		case NUMERICOID:
			return DirectFunctionCall3(numeric_in, CStringGetDatum(s),
									   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		default:
			elog(ERROR, "unexpected input type %u", type);
	}
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * Converts text values with their input functions inside one subtransaction;
 * a conversion error becomes a problem naming the field.
 */
static bool
convert_inputs(TextInput *in, int n, Problem *p)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int current = -1;
	bool		any = false;
	int			i;

	for (i = 0; i < n; i++)
		any |= (in[i].text != NULL);
	if (!any)
		return true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			if (in[i].text == NULL)
				continue;
			current = i;
			in[i].result = input_value(in[i].type, in[i].text);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const TextInput *bad;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (current < 0)
			ReThrowError(edata);
		bad = &in[current];
		return fail(p, bad->problem, bad->hint, "invalid %s \"%s\": %s%s%s", bad->field,
					shown(bad->text, strlen(bad->text)), edata->message,
					edata->detail ? ": " : "", edata->detail ? edata->detail : "");
	}
	PG_END_TRY();
	return true;
}

static const char *const occurred_at_hint = "Write times in ISO 8601, such as 2025-03-04 10:22:13+00.";
static const char *const amount_hint = "Write amounts as plain numbers, such as 19.99 or -5.",
		   *const identifiers_hint = "Give identifiers as a JSON object, such as {\"email\": \"ann@x.org\"}.",
		   *const properties_hint = "Give properties as a JSON object, or leave them empty.";

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
static TriggerData *
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
	PG_RETURN_BOOL(true);
}

/*
 * AFTER INSERT statement trigger of cdp.events and its partitions: deletes
 * the rows quarantined during the statement, and says how many.
 */
Datum
cdp_events_purge(PG_FUNCTION_ARGS)
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

	(void) trigger_data(fcinfo, "cdp.events_purge()", TRIGGER_EVENT_AFTER, false);
	/* only rows of this (sub)transaction level or deeper, i.e. this statement */
	while (start < n_pending && pending[start].nest_level < level)
		start++;
	n = n_pending - start;
	if (n == 0)
		return PointerGetDatum(NULL);

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
	return PointerGetDatum(NULL);
}

/* The text of a nullable text column, NULL when null or empty. */
static char *
raw_field(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);
	char	   *s;

	if (isnull)
		return NULL;
	s = TextDatumGetCString(d);
	return s[0] == '\0' ? NULL : s;
}

/* Text of a string as a text datum, or NULL. */
static text *
maybe_text(const char *s)
{
	return s ? cstring_to_text(s) : NULL;
}

/*
 * INSTEAD OF INSERT row trigger of the view cdp.event_load: converts the text
 * columns, checks the event, and stores it in cdp.events or in the quarantine
 * with the row exactly as received.  Empty strings count as absent.
 */
Datum
cdp_event_load_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "cdp.event_load_row()", TRIGGER_EVENT_INSTEAD, true);
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	HeapTuple	tuple = td->tg_trigtuple;
	const EventColumns *cols = event_columns(td->tg_relation);
	char	   *raw[N_FIELDS];
	TextInput	in[4];
	Event		ev;
	Problem		p;
	bool		ok;
	int			i;
	const AttrNumber attnums[N_FIELDS] = {cols->occurred_at, cols->channel, cols->type,
		cols->identifiers, cols->properties, cols->amount, cols->source};

	for (i = 0; i < N_FIELDS; i++)
		raw[i] = raw_field(tuple, desc, attnums[i]);

	in[0] = (TextInput) {"occurred_at", raw[0], TIMESTAMPTZOID, CDP_INVALID_OCCURRED_AT, occurred_at_hint};
	in[1] = (TextInput) {"identifiers", raw[3], JSONBOID, CDP_INVALID_IDENTIFIERS, identifiers_hint};
	in[2] = (TextInput) {"properties", raw[4], JSONBOID, CDP_INVALID_PROPERTIES, properties_hint};
	in[3] = (TextInput) {"amount", raw[5], NUMERICOID, CDP_INVALID_AMOUNT, amount_hint};

	ev.channel = maybe_text(raw[1]);
	ev.type = maybe_text(raw[2]);
	ev.source = maybe_text(raw[6]);
	ok = convert_inputs(in, 4, &p);
	if (ok)
	{
		ev.has_occurred_at = raw[0] != NULL;
		ev.occurred_at = raw[0] ? DatumGetTimestampTz(in[0].result) : 0;
		ev.identifiers = raw[3] ? DatumGetJsonbP(in[1].result) : NULL;
		ev.properties = raw[4] ? DatumGetJsonbP(in[2].result) : NULL;
		ev.amount = raw[5] ? DatumGetNumeric(in[3].result) : NULL;
		ok = check_event(&ev, &p);
	}
	if (ok)
	{
		(void) insert_event(&ev);
		return PointerGetDatum(tuple);
	}

	{
		JsonbParseState *st = NULL;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		for (i = 0; i < N_FIELDS; i++)
			push_string(&st, field_names[i], raw[i], raw[i] ? strlen(raw[i]) : 0);
		quarantine(&p, ev.source, JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
	}
	return PointerGetDatum(NULL);
}

/* AFTER statement trigger of cdp.channels: every session reloads the registry. */
Datum
cdp_channels_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp.channels_changed() must be fired as a trigger")));
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

/* A JSON string or null as a text datum; false if it is another JSON type. */
static bool
json_text(const JsonbValue *v, text **out)
{
	*out = NULL;
	if (v == NULL || v->type == jbvNull)
		return true;
	if (v->type != jbvString)
		return false;
	*out = cstring_to_text_with_len(v->val.string.val, v->val.string.len);
	return true;
}

/* A JSON value as a document of its own, or NULL for JSON null / absent. */
static Jsonb *
json_document(const JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		return NULL;
	return JsonbValueToJsonb((JsonbValue *) v);
}

/* A JSON value's type name, for messages. */
static const char *
jbv_kind(const JsonbValue *v)
{
	switch (v->type)
	{
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

/*
 * Turns one element of a cdp.ingest batch into an event; false with *p set
 * when it is not an object, has an unknown field, or a field of the wrong type.
 */
static bool
element_to_event(Jsonb *elem, int index, Event *ev, Problem *p)
{
	JsonbValue *fields[N_FIELDS] = {NULL};
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	val;
	JsonbIteratorToken tok;
	TextInput	in[2];
	char	   *occurred_at = NULL;
	char	   *amount = NULL;

	if (!JB_ROOT_IS_OBJECT(elem))
		return fail(p, CDP_INVALID_EVENT, "Each element of the array is an object such as {\"occurred_at\": ..., \"channel\": ..., ...}.",
					"event %d of the batch is %s, not an object", index, json_kind(elem));

	it = JsonbIteratorInit(&elem->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		int			f;

		if (tok != WJB_KEY)
			continue;
		for (f = 0; f < N_FIELDS; f++)
			if (strlen(field_names[f]) == key.val.string.len &&
				memcmp(field_names[f], key.val.string.val, key.val.string.len) == 0)
				break;
		if (f == N_FIELDS)
			return fail(p, CDP_UNKNOWN_FIELD,
						"Fields are occurred_at, channel, type, identifiers, properties, amount and source.",
						"event %d of the batch has an unknown field \"%s\"", index,
						shown(key.val.string.val, key.val.string.len));
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		fields[f] = palloc(sizeof(JsonbValue));
		*fields[f] = val;
	}

	if (fields[0] && fields[0]->type == jbvString)
		occurred_at = pnstrdup(fields[0]->val.string.val, fields[0]->val.string.len);
	else if (fields[0] && fields[0]->type != jbvNull)
		return fail(p, CDP_INVALID_OCCURRED_AT, occurred_at_hint,
					"occurred_at must be a string, not %s", jbv_kind(fields[0]));
	if (!json_text(fields[1], &ev->channel))
		return fail(p, CDP_UNKNOWN_CHANNEL, NULL, "channel must be a string, not %s", jbv_kind(fields[1]));
	if (!json_text(fields[2], &ev->type))
		return fail(p, CDP_INVALID_TYPE, NULL, "type must be a string, not %s", jbv_kind(fields[2]));
	if (!json_text(fields[6], &ev->source))
		return fail(p, CDP_INVALID_SOURCE, NULL, "source must be a string, not %s", jbv_kind(fields[6]));
	ev->identifiers = json_document(fields[3]);
	ev->properties = json_document(fields[4]);
	ev->amount = NULL;
	if (fields[5] && fields[5]->type == jbvNumeric)
		ev->amount = fields[5]->val.numeric;
	else if (fields[5] && fields[5]->type == jbvString)
		amount = pnstrdup(fields[5]->val.string.val, fields[5]->val.string.len);
	else if (fields[5] && fields[5]->type != jbvNull)
		return fail(p, CDP_INVALID_AMOUNT, amount_hint, "amount must be a number, not %s", jbv_kind(fields[5]));

	in[0] = (TextInput) {"occurred_at", occurred_at, TIMESTAMPTZOID, CDP_INVALID_OCCURRED_AT, occurred_at_hint};
	in[1] = (TextInput) {"amount", amount, NUMERICOID, CDP_INVALID_AMOUNT, amount_hint};
	if (!convert_inputs(in, 2, p))
		return false;
	ev->has_occurred_at = occurred_at != NULL;
	ev->occurred_at = occurred_at ? DatumGetTimestampTz(in[0].result) : 0;
	if (amount)
		ev->amount = DatumGetNumeric(in[1].result);
	return check_event(ev, p);
}

/* cdp.ingest(events jsonb): records a JSON array of events; returns counts. */
Datum
cdp_ingest(PG_FUNCTION_ARGS)
{
	Jsonb	   *batch = PG_GETARG_JSONB_P(0);
	MemoryContext elem_cxt;
	MemoryContext oldcxt;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		accepted = 0;
	int64		rejected = 0;
	int			index = 0;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!JB_ROOT_IS_ARRAY(batch) || JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array, not %s", json_kind(batch)),
				 errhint("Pass [{\"occurred_at\": ..., \"channel\": ..., \"type\": ..., \"identifiers\": {...}}, ...].")));

	elem_cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp ingest element", ALLOCSET_DEFAULT_SIZES);
	it = JsonbIteratorInit(&batch->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *elem;
		Event		ev;
		Problem		p;

		if (tok != WJB_ELEM)
			continue;
		CHECK_FOR_INTERRUPTS();
		index++;
		oldcxt = MemoryContextSwitchTo(elem_cxt);
		elem = JsonbValueToJsonb(&v);
		memset(&ev, 0, sizeof(ev));
		if (!element_to_event(elem, index, &ev, &p))
		{
			quarantine(&p, ev.source, elem);
			rejected++;
		}
		else
		{
			(void) insert_event(&ev);
			accepted++;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(elem_cxt);
	}
	MemoryContextDelete(elem_cxt);

	values[0] = Int64GetDatum(accepted);
	values[1] = Int64GetDatum(rejected);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
