/*
 * event_rules.c
 *	  What makes an event acceptable to cdp.events (see event_rules.h).
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "event_rules.h"
#include "ascii.h"

#include <string.h>

static const char *const problem_codes[CDP_N_PROBLEMS] = {
	[CDP_OK] = "ok",
	[CDP_MISSING_OCCURRED_AT] = "missing_occurred_at",
	[CDP_INVALID_OCCURRED_AT] = "invalid_occurred_at",
	[CDP_FUTURE_OCCURRED_AT] = "future_occurred_at",
	[CDP_ANCIENT_OCCURRED_AT] = "ancient_occurred_at",
	[CDP_MISSING_CHANNEL] = "missing_channel",
	[CDP_UNKNOWN_CHANNEL] = "unknown_channel",
	[CDP_MISSING_TYPE] = "missing_type",
	[CDP_INVALID_TYPE] = "invalid_type",
	[CDP_MISSING_IDENTIFIERS] = "missing_identifiers",
	[CDP_INVALID_IDENTIFIERS] = "invalid_identifiers",
	[CDP_INVALID_IDENTIFIER_KIND] = "invalid_identifier_kind",
	[CDP_INVALID_IDENTIFIER_VALUE] = "invalid_identifier_value",
	[CDP_INVALID_PROPERTIES] = "invalid_properties",
	[CDP_INVALID_AMOUNT] = "invalid_amount",
	[CDP_INVALID_SOURCE] = "invalid_source",
	[CDP_INVALID_EVENT] = "invalid_event",
	[CDP_UNKNOWN_FIELD] = "unknown_field",
	[CDP_INVALID_MESSAGE_ID] = "invalid_message_id",
	[CDP_DUPLICATE_MESSAGE_ID] = "duplicate_message_id",
	[CDP_AMOUNT_OUT_OF_RANGE] = "amount_out_of_range",
	[CDP_UNKNOWN_TYPE] = "unknown_type",
	[CDP_ERASED] = "erased",
};

/* Machine-readable code of a problem. */
const char *
cdp_problem_code(CdpProblem problem)
{
	if ((int) problem < 0 || problem >= CDP_N_PROBLEMS)
		return "unknown_problem";
	return problem_codes[problem];
}

/*
 * Common checks of a free text field: not blank, at most maxlen bytes, no
 * control characters, and (when trimmed is set) no surrounding white space.
 */
static int
check_text(const char *s, size_t len, size_t maxlen, int trimmed, const char **why)
{
	size_t		i;
	int			blank = 1;

	if (len == 0)
	{
		*why = "is empty";
		return 0;
	}
	if (len > maxlen)
	{
		*why = "is too long";
		return 0;
	}
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!cdp_is_space(c))
			blank = 0;
		if (cdp_is_control(c) && !(c == ' ' || (!trimmed && c == '\t')))
		{
			*why = "contains a control character";
			return 0;
		}
	}
	if (blank)
	{
		*why = "is blank";
		return 0;
	}
	if (trimmed && (cdp_is_space((unsigned char) s[0]) || cdp_is_space((unsigned char) s[len - 1])))
	{
		*why = "has leading or trailing white space";
		return 0;
	}
	return 1;
}

/* Checks an event type. */
CdpProblem
cdp_check_type(const char *s, size_t len, const char **why)
{
	return check_text(s, len, CDP_MAX_TYPE_LEN, 1, why) ? CDP_OK : CDP_INVALID_TYPE;
}

/* Checks the name of the system that sent an event. */
CdpProblem
cdp_check_source(const char *s, size_t len, const char **why)
{
	return check_text(s, len, CDP_MAX_SOURCE_LEN, 1, why) ? CDP_OK : CDP_INVALID_SOURCE;
}

/* Checks an idempotency key (message id). */
CdpProblem
cdp_check_message_id(const char *s, size_t len, const char **why)
{
	return check_text(s, len, CDP_MAX_MESSAGE_ID_LEN, 1, why) ? CDP_OK : CDP_INVALID_MESSAGE_ID;
}

/* Checks an identifier kind: [a-z][a-z0-9_]*, at most CDP_MAX_KIND_LEN bytes. */
CdpProblem
cdp_check_identifier_kind(const char *s, size_t len, const char **why)
{
	size_t		i;

	if (len == 0)
	{
		*why = "is empty";
		return CDP_INVALID_IDENTIFIER_KIND;
	}
	if (len > CDP_MAX_KIND_LEN)
	{
		*why = "is too long";
		return CDP_INVALID_IDENTIFIER_KIND;
	}
	if (!(s[0] >= 'a' && s[0] <= 'z'))
	{
		*why = "does not start with a lower-case letter";
		return CDP_INVALID_IDENTIFIER_KIND;
	}
	for (i = 1; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
		{
			*why = "contains a character other than a-z, 0-9 and _";
			return CDP_INVALID_IDENTIFIER_KIND;
		}
	}
	return CDP_OK;
}

/*
 * Checks an identifier value.  Surrounding white space is allowed: raw forms
 * such as " Ann@X.org " are kept as sent and normalized by identity rules.
 */
CdpProblem
cdp_check_identifier_value(const char *s, size_t len, const char **why)
{
	return check_text(s, len, CDP_MAX_IDENTIFIER_LEN, 0, why) ? CDP_OK : CDP_INVALID_IDENTIFIER_VALUE;
}

/* Checks that a time written as text starts with YYYY-MM-DD. */
CdpProblem
cdp_check_iso_date(const char *s, size_t len, const char **why)
{
	static const char shape[] = "dddd-dd-dd";
	size_t		i = 0;
	size_t		k;

	while (i < len && cdp_is_space((unsigned char) s[i]))
		i++;
	for (k = 0; shape[k] != '\0'; k++, i++)
	{
		if (i >= len || (shape[k] == 'd' ? !cdp_is_digit(s[i]) : s[i] != shape[k]))
		{
			*why = "does not start with an ISO 8601 date (YYYY-MM-DD)";
			return CDP_INVALID_OCCURRED_AT;
		}
	}
	if (i < len && s[i] != 'T' && s[i] != 't' && s[i] != ' ')
	{
		*why = "does not start with an ISO 8601 date (YYYY-MM-DD)";
		return CDP_INVALID_OCCURRED_AT;
	}
	return CDP_OK;
}

/* Checks when an event occurred against the receiving time and the floor. */
CdpProblem
cdp_check_occurred_at(int64_t occurred_at, int64_t now, int64_t max_skew, int64_t floor)
{
	if (occurred_at <= floor)
		return CDP_ANCIENT_OCCURRED_AT;
	/* now + max_skew, saturating */
	if (max_skew > 0 && now > INT64_MAX - max_skew)
		return CDP_OK;
	if (occurred_at > now + max_skew)
		return CDP_FUTURE_OCCURRED_AT;
	return CDP_OK;
}

/* Compares a counted string with a NUL-terminated one, like strcmp. */
static int
compare_name(const char *s, size_t len, const char *name)
{
	size_t		nlen = strlen(name);
	int			c = memcmp(s, name, len < nlen ? len : nlen);

	if (c != 0)
		return c;
	return (len > nlen) - (len < nlen);
}

/* Binary search of a counted string in a sorted array of names. */
int
cdp_find_name(const char *const *sorted, int n, const char *s, size_t len)
{
	int			lo = 0;
	int			hi = n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = compare_name(s, len, sorted[mid]);

		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}
