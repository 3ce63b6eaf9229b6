/*
 * ingest.c
 *	  The entry points that take events as text: the raw loader view
 *	  cdp.event_load (COPY or INSERT of text columns) and cdp.ingest (a JSON
 *	  array).  They convert the text, check the event with the same rules as
 *	  every other path (events.c), and store it, or quarantine it with the
 *	  row exactly as received.
 *
 * PostgreSQL 15 has no soft input errors: the input functions run in a
 * subtransaction so that a malformed time, number or JSON document becomes a
 * rejection instead of aborting the load.
 */
#include "events.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(cdp_event_load_row);
PG_FUNCTION_INFO_V1(cdp_ingest);

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
	{
		const char *why;

		if (in[i].text == NULL)
			continue;
		any = true;
		/* times must be ISO 8601: 01/06/2025 must not depend on DateStyle */
		if (in[i].type == TIMESTAMPTZOID &&
			cdp_check_iso_date(in[i].text, strlen(in[i].text), &why) != CDP_OK)
			return cdp_fail(p, in[i].problem, in[i].hint, "invalid %s \"%s\": it %s", in[i].field,
						cdp_shown(in[i].text, strlen(in[i].text)), why);
	}
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
		return cdp_fail(p, bad->problem, bad->hint, "invalid %s \"%s\": %s%s%s", bad->field,
					cdp_shown(bad->text, strlen(bad->text)), edata->message,
					edata->detail ? ": " : "", edata->detail ? edata->detail : "");
	}
	PG_END_TRY();
	return true;
}

static const char *const occurred_at_hint = "Write times in ISO 8601, such as 2025-03-04 10:22:13+00.";
static const char *const amount_hint = "Write amounts as plain numbers, such as 19.99 or -5.",
		   *const identifiers_hint = "Give identifiers as a JSON object, such as {\"email\": \"ann@x.org\"}.",
		   *const properties_hint = "Give properties as a JSON object, or leave them empty.";

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
	TriggerData *td = cdp_trigger_data(fcinfo, "cdp.event_load_row()", TRIGGER_EVENT_INSTEAD, true);
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	HeapTuple	tuple = td->tg_trigtuple;
	char	   *raw[N_FIELDS];
	TextInput	in[4];
	Event		ev;
	Problem		p;
	bool		ok;
	int			i;

	/*
	 * The view's statement trigger (event_load_done) ends the statement's
	 * batch; a schema of 0.1.0 (before ALTER EXTENSION cdp UPDATE) has none,
	 * and each row then ends its own.
	 */
	bool		deferring = td->tg_relation->trigdesc != NULL &&
		td->tg_relation->trigdesc->trig_insert_after_statement;

	/* the view's columns are the event fields but message_id, in order */
	if (desc->natts != N_FIELDS - 1)
		elog(ERROR, "cdp.event_load has %d columns, expected %d", desc->natts, N_FIELDS - 1);
	for (i = 0; i < N_FIELDS - 1; i++)
		raw[i] = raw_field(tuple, desc, i + 1);
	raw[N_FIELDS - 1] = NULL;

	in[0] = (TextInput) {"occurred_at", raw[0], TIMESTAMPTZOID, CDP_INVALID_OCCURRED_AT, occurred_at_hint};
	in[1] = (TextInput) {"identifiers", raw[3], JSONBOID, CDP_INVALID_IDENTIFIERS, identifiers_hint};
	in[2] = (TextInput) {"properties", raw[4], JSONBOID, CDP_INVALID_PROPERTIES, properties_hint};
	in[3] = (TextInput) {"amount", raw[5], NUMERICOID, CDP_INVALID_AMOUNT, amount_hint};

	ev.channel = maybe_text(raw[1]);
	ev.type = maybe_text(raw[2]);
	ev.source = maybe_text(raw[6]);
	ev.message_id = maybe_text(raw[7]);
	ok = convert_inputs(in, 4, &p);
	if (ok)
	{
		ev.has_occurred_at = raw[0] != NULL;
		ev.occurred_at = raw[0] ? DatumGetTimestampTz(in[0].result) : 0;
		ev.identifiers = raw[3] ? DatumGetJsonbP(in[1].result) : NULL;
		ev.properties = raw[4] ? DatumGetJsonbP(in[2].result) : NULL;
		ev.amount = raw[5] ? DatumGetNumeric(in[3].result) : NULL;
		ok = cdp_event_check(&ev, &p);
	}
	if (ok && !deferring)
		(void) cdp_insert_event(&ev);	/* ends its own statement */
	else if (ok)
	{
		(void) cdp_insert_event_deferred(&ev);
		cdp_batch_count_loader_row(true);
	}
	if (ok)
		return PointerGetDatum(tuple);

	{
		JsonbParseState *st = NULL;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		for (i = 0; i < N_FIELDS - 1; i++)
			cdp_push_string(&st, cdp_field_names[i], raw[i], raw[i] ? strlen(raw[i]) : 0);
		cdp_quarantine(&p, ev.source, JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
	}
	if (deferring)
		cdp_batch_count_loader_row(false);
	return PointerGetDatum(NULL);
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
		return cdp_fail(p, CDP_INVALID_EVENT, "Each element of the array is an object such as {\"occurred_at\": ..., \"channel\": ..., ...}.",
					"event %d of the batch is %s, not an object", index, cdp_json_kind(elem));

	it = JsonbIteratorInit(&elem->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		int			f;

		if (tok != WJB_KEY)
			continue;
		for (f = 0; f < N_FIELDS; f++)
			if (strlen(cdp_field_names[f]) == key.val.string.len &&
				memcmp(cdp_field_names[f], key.val.string.val, key.val.string.len) == 0)
				break;
		if (f == N_FIELDS)
			return cdp_fail(p, CDP_UNKNOWN_FIELD,
						"Fields are occurred_at, channel, type, identifiers, properties, amount, source and message_id.",
						"event %d of the batch has an unknown field \"%s\"", index,
						cdp_shown(key.val.string.val, key.val.string.len));
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		fields[f] = palloc(sizeof(JsonbValue));
		*fields[f] = val;
	}

	if (fields[0] && fields[0]->type == jbvString)
		occurred_at = pnstrdup(fields[0]->val.string.val, fields[0]->val.string.len);
	else if (fields[0] && fields[0]->type != jbvNull)
		return cdp_fail(p, CDP_INVALID_OCCURRED_AT, occurred_at_hint,
					"occurred_at must be a string, not %s", cdp_jbv_kind(fields[0]));
	if (!json_text(fields[1], &ev->channel))
		return cdp_fail(p, CDP_UNKNOWN_CHANNEL, NULL, "channel must be a string, not %s", cdp_jbv_kind(fields[1]));
	if (!json_text(fields[2], &ev->type))
		return cdp_fail(p, CDP_INVALID_TYPE, NULL, "type must be a string, not %s", cdp_jbv_kind(fields[2]));
	if (!json_text(fields[6], &ev->source))
		return cdp_fail(p, CDP_INVALID_SOURCE, NULL, "source must be a string, not %s", cdp_jbv_kind(fields[6]));
	if (!json_text(fields[7], &ev->message_id))
		return cdp_fail(p, CDP_INVALID_MESSAGE_ID, NULL, "message_id must be a string, not %s", cdp_jbv_kind(fields[7]));
	ev->identifiers = json_document(fields[3]);
	ev->properties = json_document(fields[4]);
	ev->amount = NULL;
	if (fields[5] && fields[5]->type == jbvNumeric)
		ev->amount = fields[5]->val.numeric;
	else if (fields[5] && fields[5]->type == jbvString)
		amount = pnstrdup(fields[5]->val.string.val, fields[5]->val.string.len);
	else if (fields[5] && fields[5]->type != jbvNull)
		return cdp_fail(p, CDP_INVALID_AMOUNT, amount_hint, "amount must be a number, not %s", cdp_jbv_kind(fields[5]));

	in[0] = (TextInput) {"occurred_at", occurred_at, TIMESTAMPTZOID, CDP_INVALID_OCCURRED_AT, occurred_at_hint};
	in[1] = (TextInput) {"amount", amount, NUMERICOID, CDP_INVALID_AMOUNT, amount_hint};
	if (!convert_inputs(in, 2, p))
		return false;
	ev->has_occurred_at = occurred_at != NULL;
	ev->occurred_at = occurred_at ? DatumGetTimestampTz(in[0].result) : 0;
	if (amount)
		ev->amount = DatumGetNumeric(in[1].result);
	return cdp_event_check(ev, p);
}

/* Stores or quarantines each element of a batch; counts both. */
static void
ingest_elements(Jsonb *batch, int64 *accepted, int64 *rejected)
{
	MemoryContext elem_cxt;
	MemoryContext oldcxt;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			index = 0;

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
			cdp_quarantine(&p, ev.source, elem);
			(*rejected)++;
		}
		else
		{
			(void) cdp_insert_event(&ev);
			(*accepted)++;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(elem_cxt);
	}
	MemoryContextDelete(elem_cxt);
}

/*
 * cdp.ingest(events jsonb): records a JSON array of events as one statement
 * (one stitching batch); returns how many were accepted and rejected.
 */
Datum
cdp_ingest(PG_FUNCTION_ARGS)
{
	Jsonb	   *batch = PG_GETARG_JSONB_P(0);
	int64		accepted = 0;
	int64		rejected = 0;
	int64		retries;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!JB_ROOT_IS_ARRAY(batch) || JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array, not %s", cdp_json_kind(batch)),
				 errhint("Pass [{\"occurred_at\": ..., \"channel\": ..., \"type\": ..., \"identifiers\": {...}}, ...].")));

	cdp_batch_defer();
	PG_TRY();
	{
		ingest_elements(batch, &accepted, &rejected);
	}
	PG_FINALLY();
	{
		cdp_batch_undefer();
	}
	PG_END_TRY();
	retries = cdp_batch_end();
	accepted -= retries;
	rejected += retries;

	values[0] = Int64GetDatum(accepted);
	values[1] = Int64GetDatum(rejected);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
