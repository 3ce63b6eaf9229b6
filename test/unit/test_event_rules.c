/*
 * test_event_rules.c
 *	  Unit tests of src/core/event_rules.c.
 */
#include "unit.h"
#include "event_rules.h"

#include <stdint.h>

const char *unit_suite = "event_rules";

#define S(lit) lit, sizeof(lit) - 1

UNIT_TEST(problem_codes_are_named)
{
	int			p;

	for (p = 0; p < CDP_N_PROBLEMS; p++)
	{
		const char *code = cdp_problem_code((CdpProblem) p);

		CHECK(code != NULL);
		CHECK(strcmp(code, "unknown_problem") != 0);
	}
	CHECK_EQ_STR(cdp_problem_code(CDP_UNKNOWN_CHANNEL), "unknown_channel");
	CHECK_EQ_STR(cdp_problem_code(CDP_N_PROBLEMS), "unknown_problem");
	CHECK_EQ_STR(cdp_problem_code((CdpProblem) -1), "unknown_problem");
}

UNIT_TEST(type_checks)
{
	const char *why = NULL;

	CHECK_EQ_INT(cdp_check_type(S("purchase"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_type(S("Order Completed"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_type(S(""), &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "is empty");
	CHECK_EQ_INT(cdp_check_type(S("   "), &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(cdp_check_type(S(" purchase"), &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "has leading or trailing white space");
	CHECK_EQ_INT(cdp_check_type(S("purchase\n"), &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "contains a control character");
	CHECK_EQ_INT(cdp_check_type(S("pur\x7f" "chase"), &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "contains a control character");
	/* UTF-8 is fine */
	CHECK_EQ_INT(cdp_check_type(S("achat_confirm\xc3\xa9"), &why), CDP_OK);
}

UNIT_TEST(type_length_limit)
{
	char		buf[CDP_MAX_TYPE_LEN + 1];
	const char *why = NULL;

	memset(buf, 'a', sizeof(buf));
	CHECK_EQ_INT(cdp_check_type(buf, CDP_MAX_TYPE_LEN, &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_type(buf, CDP_MAX_TYPE_LEN + 1, &why), CDP_INVALID_TYPE);
	CHECK_EQ_STR(why, "is too long");
}

UNIT_TEST(message_id_checks)
{
	const char *why = NULL;
	char		longest[CDP_MAX_MESSAGE_ID_LEN + 2];

	CHECK_EQ_INT(cdp_check_message_id(S("3f1c-9a2e"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_message_id(S(""), &why), CDP_INVALID_MESSAGE_ID);
	CHECK_EQ_INT(cdp_check_message_id(S(" m1"), &why), CDP_INVALID_MESSAGE_ID);
	CHECK_EQ_INT(cdp_check_message_id(S("m\n1"), &why), CDP_INVALID_MESSAGE_ID);
	memset(longest, 'm', sizeof(longest));
	CHECK_EQ_INT(cdp_check_message_id(longest, CDP_MAX_MESSAGE_ID_LEN, &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_message_id(longest, CDP_MAX_MESSAGE_ID_LEN + 1, &why), CDP_INVALID_MESSAGE_ID);
	CHECK(strcmp(cdp_problem_code(CDP_DUPLICATE_MESSAGE_ID), "duplicate_message_id") == 0);
	CHECK(strcmp(cdp_problem_code(CDP_AMOUNT_OUT_OF_RANGE), "amount_out_of_range") == 0);
}

UNIT_TEST(source_checks)
{
	const char *why = NULL;

	CHECK_EQ_INT(cdp_check_source(S("web-sdk"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_source(S(""), &why), CDP_INVALID_SOURCE);
	CHECK_EQ_INT(cdp_check_source(S("pos\t"), &why), CDP_INVALID_SOURCE);
}

UNIT_TEST(identifier_kind_checks)
{
	const char *why = NULL;

	CHECK_EQ_INT(cdp_check_identifier_kind(S("email"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("device_id"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("x9"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_kind(S(""), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_STR(why, "is empty");
	CHECK_EQ_INT(cdp_check_identifier_kind(S("Email"), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_STR(why, "does not start with a lower-case letter");
	CHECK_EQ_INT(cdp_check_identifier_kind(S("_email"), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("9email"), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("e-mail"), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_STR(why, "contains a character other than a-z, 0-9 and _");
	CHECK_EQ_INT(cdp_check_identifier_kind(S("emailAddress"), &why), CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("abcdefghijklmnopqrstuvwxyz012345"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_kind(S("abcdefghijklmnopqrstuvwxyz0123456"), &why),
				 CDP_INVALID_IDENTIFIER_KIND);
	CHECK_EQ_STR(why, "is too long");
}

UNIT_TEST(identifier_value_checks)
{
	char		buf[CDP_MAX_IDENTIFIER_LEN + 1];
	const char *why = NULL;

	CHECK_EQ_INT(cdp_check_identifier_value(S("ann@x.org"), &why), CDP_OK);
	/* messy raw forms are kept: normalization happens in identity rules */
	CHECK_EQ_INT(cdp_check_identifier_value(S(" Ann@X.org "), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_value(S("07700 900123\t"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_value(S(""), &why), CDP_INVALID_IDENTIFIER_VALUE);
	CHECK_EQ_INT(cdp_check_identifier_value(S(" \t "), &why), CDP_INVALID_IDENTIFIER_VALUE);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(cdp_check_identifier_value(S("a\nb"), &why), CDP_INVALID_IDENTIFIER_VALUE);
	CHECK_EQ_STR(why, "contains a control character");
	memset(buf, 'x', sizeof(buf));
	CHECK_EQ_INT(cdp_check_identifier_value(buf, CDP_MAX_IDENTIFIER_LEN, &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_identifier_value(buf, CDP_MAX_IDENTIFIER_LEN + 1, &why),
				 CDP_INVALID_IDENTIFIER_VALUE);
}

UNIT_TEST(occurred_at_window)
{
	const int64_t day = 86400;

	CHECK_EQ_INT(cdp_check_occurred_at(1000, 2000, day, 0), CDP_OK);
	CHECK_EQ_INT(cdp_check_occurred_at(2000 + day, 2000, day, 0), CDP_OK);
	CHECK_EQ_INT(cdp_check_occurred_at(2001 + day, 2000, day, 0), CDP_FUTURE_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_occurred_at(2001, 2000, 0, 0), CDP_FUTURE_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_occurred_at(0, 2000, day, 0), CDP_ANCIENT_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_occurred_at(-5, 2000, day, 0), CDP_ANCIENT_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_occurred_at(1, 2000, day, 0), CDP_OK);
	/* no overflow near the end of the range */
	CHECK_EQ_INT(cdp_check_occurred_at(INT64_MAX, INT64_MAX - 1, day, 0), CDP_OK);
	CHECK_EQ_INT(cdp_check_occurred_at(INT64_MAX, 0, INT64_MAX, 0), CDP_OK);
}

UNIT_TEST(find_name_in_sorted_array)
{
	static const char *const names[] = {"app", "call_center", "email", "mail", "push", "sms", "store", "web"};
	const int	n = (int) (sizeof(names) / sizeof(names[0]));
	int			i;

	for (i = 0; i < n; i++)
		CHECK_EQ_INT(cdp_find_name(names, n, names[i], strlen(names[i])), i);
	CHECK_EQ_INT(cdp_find_name(names, n, S("webs")), -1);
	CHECK_EQ_INT(cdp_find_name(names, n, S("we")), -1);
	CHECK_EQ_INT(cdp_find_name(names, n, S("Web")), -1);
	CHECK_EQ_INT(cdp_find_name(names, n, S("")), -1);
	CHECK_EQ_INT(cdp_find_name(names, n, S("zzz")), -1);
	/* a counted string need not be NUL-terminated */
	CHECK_EQ_INT(cdp_find_name(names, n, "smsX", 3), 5);
	CHECK_EQ_INT(cdp_find_name(names, 0, S("web")), -1);
}

UNIT_TEST(iso_dates_only)
{
	const char *why = NULL;

	CHECK_EQ_INT(cdp_check_iso_date(S("2025-03-04 10:22:13+00"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-03-04T10:22:13Z"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-03-04t10:22"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_iso_date(S("  2025-03-04"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-03-04"), &why), CDP_OK);
	/* the date itself is checked later by the time input function */
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-04-31"), &why), CDP_OK);
	CHECK_EQ_INT(cdp_check_iso_date(S("01/06/2025"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_STR(why, "does not start with an ISO 8601 date (YYYY-MM-DD)");
	CHECK_EQ_INT(cdp_check_iso_date(S("06.01.2025 10:00"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-3-4"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("20250304"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("2025-03-04x"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("now"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("epoch"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S("Mar 4 2025"), &why), CDP_INVALID_OCCURRED_AT);
	CHECK_EQ_INT(cdp_check_iso_date(S(""), &why), CDP_INVALID_OCCURRED_AT);
	/* a cut-off string is not read past its length */
	CHECK_EQ_INT(cdp_check_iso_date("2025-03-04", 7, &why), CDP_INVALID_OCCURRED_AT);
}

const unit_case unit_tests[] = {
	UNIT_CASE(problem_codes_are_named),
	UNIT_CASE(type_checks),
	UNIT_CASE(type_length_limit),
	UNIT_CASE(source_checks),
	UNIT_CASE(message_id_checks),
	UNIT_CASE(identifier_kind_checks),
	UNIT_CASE(identifier_value_checks),
	UNIT_CASE(occurred_at_window),
	UNIT_CASE(find_name_in_sorted_array),
	UNIT_CASE(iso_dates_only),
	UNIT_END
};
