/*
 * event_rules.h
 *	  What makes an event acceptable to cdp.events, independent of PostgreSQL.
 *
 * The glue (src/events.c) extracts the fields of a row and asks these
 * functions; they answer with a problem code and, for text fields, a short
 * phrase saying what is wrong ("is empty", "contains a control character").
 */
#ifndef CDP_EVENT_RULES_H
#define CDP_EVENT_RULES_H

#include <stddef.h>
#include <stdint.h>

/* Limits on the text fields of an event, in bytes. */
#define CDP_MAX_TYPE_LEN			100
#define CDP_MAX_SOURCE_LEN			100
#define CDP_MAX_MESSAGE_ID_LEN		255
#define CDP_MAX_KIND_LEN			32
#define CDP_MAX_IDENTIFIER_LEN		256
#define CDP_MAX_IDENTIFIERS			50

typedef enum CdpProblem
{
	CDP_OK = 0,
	CDP_MISSING_OCCURRED_AT,
	CDP_INVALID_OCCURRED_AT,
	CDP_FUTURE_OCCURRED_AT,
	CDP_ANCIENT_OCCURRED_AT,
	CDP_MISSING_CHANNEL,
	CDP_UNKNOWN_CHANNEL,
	CDP_MISSING_TYPE,
	CDP_INVALID_TYPE,
	CDP_MISSING_IDENTIFIERS,
	CDP_INVALID_IDENTIFIERS,
	CDP_INVALID_IDENTIFIER_KIND,
	CDP_INVALID_IDENTIFIER_VALUE,
	CDP_INVALID_PROPERTIES,
	CDP_INVALID_AMOUNT,
	CDP_INVALID_SOURCE,
	CDP_INVALID_EVENT,
	CDP_UNKNOWN_FIELD,
	CDP_INVALID_MESSAGE_ID,
	CDP_DUPLICATE_MESSAGE_ID,
	CDP_AMOUNT_OUT_OF_RANGE,
	CDP_UNKNOWN_TYPE,
	CDP_ERASED,
	CDP_N_PROBLEMS
} CdpProblem;

/* Machine-readable code of a problem, as stored in rejected_events.reason_code. */
extern const char *cdp_problem_code(CdpProblem problem);

/* Checks an event type; on failure *why says what is wrong. */
extern CdpProblem cdp_check_type(const char *s, size_t len, const char **why);

/* Checks the name of the system that sent an event. */
extern CdpProblem cdp_check_source(const char *s, size_t len, const char **why);

/* Checks an idempotency key (message id): 1 to 255 bytes, trimmed, no control characters. */
extern CdpProblem cdp_check_message_id(const char *s, size_t len, const char **why);

/* Checks an identifier kind: a lower-case word such as email or device_id. */
extern CdpProblem cdp_check_identifier_kind(const char *s, size_t len, const char **why);

/* Checks an identifier value: not blank, not too long, no control characters. */
extern CdpProblem cdp_check_identifier_value(const char *s, size_t len, const char **why);

/*
 * Checks that a time written as text starts with an ISO 8601 date
 * (YYYY-MM-DD, then the end, 'T' or a space), so that 01/06/2025 is never
 * read as 6 January or 1 June depending on a setting.
 */
extern CdpProblem cdp_check_iso_date(const char *s, size_t len, const char **why);

/*
 * Checks when an event occurred, all times in the same unit and epoch:
 * not after now + max_skew, and strictly after floor.
 */
extern CdpProblem cdp_check_occurred_at(int64_t occurred_at, int64_t now,
										int64_t max_skew, int64_t floor);

/*
 * Binary search of a name (s, len bytes) in a sorted array of n
 * NUL-terminated names; returns its index or -1.
 */
extern int	cdp_find_name(const char *const *sorted, int n, const char *s, size_t len);

#endif							/* CDP_EVENT_RULES_H */
