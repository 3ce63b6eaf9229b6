/*
 * events.h
 *	  What the glue files of the event store share: an event with typed
 *	  fields, the problem that refuses one, and the functions that check,
 *	  store and quarantine events (events.c) for the entry points that
 *	  convert text (ingest.c).
 */
#ifndef CDP_EVENTS_H
#define CDP_EVENTS_H

#include "cdp.h"
#include "event_rules.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

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
	text	   *message_id;		/* idempotency key, or NULL */
} Event;

/* Why an event is refused. */
typedef struct Problem
{
	CdpProblem	code;
	char	   *message;
	const char *hint;
} Problem;


/* The event fields: cdp.event_load's columns in order, then message_id. */
#define N_FIELDS 8
extern const char *const cdp_field_names[N_FIELDS];

extern bool cdp_fail(Problem *p, CdpProblem code, const char *hint, const char *fmt,...) pg_attribute_printf(4, 5);
extern char *cdp_shown(const char *s, int len);
extern const char *cdp_jbv_kind(const JsonbValue *v);
extern const char *cdp_json_kind(Jsonb *jb);
extern bool cdp_event_check(const Event *ev, Problem *p);
extern void cdp_quarantine(const Problem *p, text *source, Jsonb *raw);
extern Jsonb *cdp_event_to_jsonb(const Event *ev);
extern int64 cdp_insert_event(const Event *ev);
extern int64 cdp_insert_event_deferred(const Event *ev);
extern bool cdp_event_type_known(text *type);
extern void cdp_push_string(JsonbParseState **st, const char *key, const char *val, int len);
extern TriggerData *cdp_trigger_data(FunctionCallInfo fcinfo, const char *fname,
									 TriggerEvent timing, bool for_row);

/* What a loading statement leaves for its end (event_batch.c). */
extern void cdp_batch_reject(int64 event_id, const Event *ev);
extern void cdp_batch_accept(int64 event_id, const Event *ev);
extern void cdp_batch_defer(void);
extern void cdp_batch_undefer(void);
extern int64 cdp_batch_end(void);
extern void cdp_batch_count_loader_row(bool stored);
extern bool cdp_batch_purging(void);

/* Whether cdp.move_default_events is moving stored events (events.c). */
extern bool cdp_events_moving(void);

#endif							/* CDP_EVENTS_H */

/* Runs work as the owner of cdp.events (a loader may not read or write cdp's other tables). */
extern void cdp_as_events_owner(void (*work) (void));
