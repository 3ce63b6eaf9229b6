/*
 * test_offer_rules.c
 *	  Unit tests of src/core/offer_rules.c: the JSON parser on its edge
 *	  cases (escapes, surrogates, numbers, nesting, trailing data), every
 *	  fact and operator of rules, missing and ill-typed facts, all/any/not
 *	  combinations, the exact text of validation errors and of reasons, the
 *	  limits, and a deterministic fuzz run of random and mutated inputs.
 *
 * Rules and facts are written with single quotes, turned into double quotes
 * by q(), so that they stay readable.
 */
#include "unit.h"
#include "offer_rules.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "offer_rules";

/*
 * An arena of separate malloc blocks (so that AddressSanitizer sees every
 * overrun), all freed by reset().
 */
typedef union Block
{
	union Block *next;
	max_align_t align;
} Block;

static Block *blocks = NULL;
static size_t allocated = 0;

static void *
test_alloc(void *ctx, size_t size)
{
	Block	   *b = malloc(sizeof(Block) + size);

	(void) ctx;
	if (b == NULL)
		abort();
	b->next = blocks;
	blocks = b;
	allocated += size;
	return b + 1;
}

static CdpArena arena = {test_alloc, NULL};

static void
reset(void)
{
	while (blocks != NULL)
	{
		Block	   *next = blocks->next;

		free(blocks);
		blocks = next;
	}
	allocated = 0;
}

/* A copy of s in the arena with single quotes turned into double quotes. */
static const char *
q(const char *s)
{
	size_t		n = strlen(s);
	char	   *b = test_alloc(NULL, n + 1);
	size_t		i;

	for (i = 0; i <= n; i++)
		b[i] = s[i] == '\'' ? '"' : s[i];
	return b;
}

static char err[512];
static char why[512];

/* Parses JSON given with single quotes; NULL on error (then in err). */
static CdpJson *
J(const char *s)
{
	const char *t = q(s);

	return cdp_json_parse(&arena, t, strlen(t), err, sizeof(err));
}

/* Parses JSON as it is; NULL on error (then in err). */
static CdpJson *
Jraw(const char *s, size_t len)
{
	return cdp_json_parse(&arena, s, len, err, sizeof(err));
}

/* The error of a JSON document that must not parse. */
static const char *
json_error(const char *s)
{
	if (Jraw(s, strlen(s)) != NULL)
		return "(parsed)";
	return err;
}

static CdpRule *
R(const char *rule)
{
	const char *t = q(rule);

	return cdp_rule_compile(&arena, t, strlen(t), "eligibility", err, sizeof(err));
}

/* The error of a rule that must not compile. */
static const char *
rule_error(const char *rule)
{
	if (R(rule) != NULL)
		return "(compiled)";
	return err;
}

static const char *const FACTS =
"{'rfm_segment': 'Lost', 'last_channel': 'web', 'clv': 42.5, 'p_alive': 0.8,"
" 'orders': 3, 'revenue': 120, 'days_since_last_purchase': 40,"
" 'days_since_last_contact': 2,"
" 'days_since_last_contact_by_channel': {'email': 2, 'sms': 30},"
" 'events': {'purchase': 3, 'view': 10, 'bad': 'x', 'nul': null},"
" 'interest': {'shoes': 0.7},"
" 'traits': {'tier': 'gold', 'age': 34, 'vip': true, 'nothing': null, 'obj': {}},"
" 'open_breaks': {'checkout': ['p1', 'p2'], 'browse': [], 'odd': true},"
" 'consent': {'email': true, 'sms': false, 'push': 'yes'}}";

/*
 * Compiles a rule and evaluates it against facts: 1 or 0, or -1 (the
 * compile error printed) when it does not compile.
 */
static int
ev(const char *rule, const char *facts)
{
	CdpRule    *r = R(rule);
	const CdpJson *f = facts != NULL ? J(facts) : NULL;

	if (r == NULL)
	{
		fprintf(stderr, "  rule %s: %s\n", rule, err);
		return -1;
	}
	if (facts != NULL && f == NULL)
	{
		fprintf(stderr, "  facts %s: %s\n", facts, err);
		return -1;
	}
	return cdp_rule_eval(r, f, why, sizeof(why));
}

/* The reason a rule does not hold for FACTS. */
static const char *
reason(const char *rule)
{
	int			res = ev(rule, FACTS);

	if (res != 0)
		return res == 1 ? "(holds)" : "(error)";
	return why;
}

UNIT_TEST(json_scalars)
{
	CdpJson    *v;

	v = J(" null ");
	CHECK(v != NULL && v->type == CDP_JSON_NULL);
	v = J("true");
	CHECK(v != NULL && v->type == CDP_JSON_BOOL && v->boolean == 1);
	v = J("\tfalse\r\n");
	CHECK(v != NULL && v->type == CDP_JSON_BOOL && v->boolean == 0);
	v = J("0");
	CHECK(v != NULL && v->type == CDP_JSON_NUMBER && v->number == 0);
	v = J("-0");
	CHECK(v != NULL && v->type == CDP_JSON_NUMBER && v->number == 0);
	v = J("1.5e3");
	CHECK(v != NULL && v->number == 1500);
	v = J("-12.25E-2");
	CHECK(v != NULL && v->number == -0.1225);
	v = J("1E+2");
	CHECK(v != NULL && v->number == 100);
	v = J("1e-400");
	CHECK(v != NULL && v->number == 0);
	v = J("123456789012345678901234567890");
	CHECK(v != NULL && v->number > 1.2e29 && v->number < 1.3e29);
	v = J("'text'");
	CHECK(v != NULL && v->type == CDP_JSON_STRING && v->len == 4 &&
		  strcmp(v->str, "text") == 0);
	reset();
}

UNIT_TEST(json_numbers_rejected)
{
	CHECK_EQ_STR(json_error("01"), "invalid JSON at byte 0: leading zero in a number");
	CHECK_EQ_STR(json_error("-01"), "invalid JSON at byte 1: leading zero in a number");
	CHECK_EQ_STR(json_error("-"), "invalid JSON at byte 1: digit expected in a number");
	CHECK_EQ_STR(json_error("1."), "invalid JSON at byte 2: digit expected after the decimal point");
	CHECK_EQ_STR(json_error("1.e5"), "invalid JSON at byte 2: digit expected after the decimal point");
	CHECK_EQ_STR(json_error("1e"), "invalid JSON at byte 2: digit expected in the exponent");
	CHECK_EQ_STR(json_error("1e+"), "invalid JSON at byte 3: digit expected in the exponent");
	CHECK_EQ_STR(json_error(".5"), "invalid JSON at byte 0: unexpected character '.'");
	CHECK_EQ_STR(json_error("+1"), "invalid JSON at byte 0: unexpected character '+'");
	CHECK_EQ_STR(json_error("NaN"), "invalid JSON at byte 0: unexpected character 'N'");
	CHECK_EQ_STR(json_error("Infinity"), "invalid JSON at byte 0: unexpected character 'I'");
	CHECK_EQ_STR(json_error("-Infinity"), "invalid JSON at byte 1: digit expected in a number");
	CHECK_EQ_STR(json_error("1e999"), "invalid JSON at byte 0: number out of range");
	CHECK_EQ_STR(json_error("[-1e400]"), "invalid JSON at byte 1: number out of range");
	CHECK_EQ_STR(json_error("0x10"), "invalid JSON at byte 1: unexpected data after the value");
	CHECK_EQ_STR(json_error("1.5.2"), "invalid JSON at byte 3: unexpected data after the value");
	CHECK_EQ_STR(json_error("[1 2]"), "invalid JSON at byte 3: expected ',' or ']'");
	reset();
}

UNIT_TEST(json_strings)
{
	CdpJson    *v;
	static const char pair[] = "\"\\uD83D\\uDE00\"";

	v = Jraw("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 18);
	CHECK(v != NULL && v->len == 8 && memcmp(v->str, "\"\\/\b\f\n\r\t", 8) == 0);
	v = Jraw("\"\\u00e9\\u20AC\"", 14);
	CHECK(v != NULL && v->len == 5 && memcmp(v->str, "\xc3\xa9\xe2\x82\xac", 5) == 0);
	v = Jraw(pair, sizeof(pair) - 1);
	CHECK(v != NULL && v->len == 4 && memcmp(v->str, "\xf0\x9f\x98\x80", 4) == 0);
	v = Jraw("\"a\\u0000b\"", 10);
	CHECK(v != NULL && v->len == 3 && memcmp(v->str, "a\0b", 4) == 0);
	v = Jraw("\"\xc3\xa9\x7f\"", 5);	/* raw UTF-8 and DEL pass as they are */
	CHECK(v != NULL && v->len == 3);
	v = Jraw("\"\"", 2);
	CHECK(v != NULL && v->type == CDP_JSON_STRING && v->len == 0 && v->str[0] == '\0');

	CHECK_EQ_STR(json_error("\"\\uD83D\""), "invalid JSON at byte 1: lone surrogate in a \\u escape");
	CHECK_EQ_STR(json_error("\"\\uD83D\\u0041\""), "invalid JSON at byte 1: lone surrogate in a \\u escape");
	CHECK_EQ_STR(json_error("\"ab\\uDE00\""), "invalid JSON at byte 3: lone surrogate in a \\u escape");
	CHECK_EQ_STR(json_error("\"\\u12G4\""), "invalid JSON at byte 1: invalid \\u escape");
	CHECK_EQ_STR(json_error("\"\\u12\""), "invalid JSON at byte 1: invalid \\u escape");
	CHECK_EQ_STR(json_error("\"\\x\""), "invalid JSON at byte 1: invalid escape in a string");
	CHECK_EQ_STR(json_error("\"\\'\""), "invalid JSON at byte 1: invalid escape in a string");
	CHECK_EQ_STR(json_error("\"a\nb\""), "invalid JSON at byte 2: control character in a string");
	CHECK_EQ_STR(json_error("\"a\tb\""), "invalid JSON at byte 2: control character in a string");
	CHECK_EQ_STR(json_error("[\"abc"), "invalid JSON at byte 1: unterminated string");
	CHECK_EQ_STR(json_error("\"abc\\\""), "invalid JSON at byte 0: unterminated string");
	CHECK_EQ_STR(json_error("'x'"), "invalid JSON at byte 0: unexpected character '''");
	reset();
}

UNIT_TEST(json_structures)
{
	CdpJson    *v;
	const CdpJson *m;

	v = J("{'b': 1, 'a': [true, null, {'c': 'd'}], '': 2}");
	CHECK(v != NULL && v->type == CDP_JSON_OBJECT && v->n == 3);
	if (v == NULL)
		return;
	CHECK(strcmp(v->keys[0], "b") == 0 && strcmp(v->keys[1], "a") == 0 && v->key_lens[2] == 0);
	m = cdp_json_get(v, "a");
	CHECK(m != NULL && m->type == CDP_JSON_ARRAY && m->n == 3);
	CHECK(m->items[1]->type == CDP_JSON_NULL);
	CHECK(cdp_json_get(m->items[2], "c")->type == CDP_JSON_STRING);
	CHECK(cdp_json_get(v, "c") == NULL);
	CHECK(cdp_json_get(m, "a") == NULL);	/* not an object */
	CHECK(cdp_json_get(NULL, "a") == NULL);
	CHECK(cdp_json_getn(v, "abc", 1)->type == CDP_JSON_ARRAY);
	CHECK(cdp_json_getn(v, "", 0)->number == 2);
	v = J(" [ ] ");
	CHECK(v != NULL && v->type == CDP_JSON_ARRAY && v->n == 0);
	v = J("{}");
	CHECK(v != NULL && v->type == CDP_JSON_OBJECT && v->n == 0);
	/* Not NUL-terminated: only len bytes are read. */
	v = Jraw("[1,2]xyz", 5);
	CHECK(v != NULL && v->n == 2);

	CHECK_EQ_STR(json_error(""), "invalid JSON at byte 0: unexpected end of input");
	CHECK_EQ_STR(json_error("  \n "), "invalid JSON at byte 4: unexpected end of input");
	CHECK_EQ_STR(json_error("[1,2"), "invalid JSON at byte 4: unexpected end of input");
	CHECK_EQ_STR(json_error("[1,]"), "invalid JSON at byte 3: unexpected character ']'");
	CHECK_EQ_STR(json_error("[x]"), "invalid JSON at byte 1: unexpected character 'x'");
	CHECK_EQ_STR(json_error("[\x01]"), "invalid JSON at byte 1: unexpected character 0x01");
	CHECK_EQ_STR(json_error("{\"a\" 1}"), "invalid JSON at byte 5: expected ':'");
	CHECK_EQ_STR(json_error("{\"a\":1,}"), "invalid JSON at byte 7: object key expected");
	CHECK_EQ_STR(json_error("{1:2}"), "invalid JSON at byte 1: object key expected");
	CHECK_EQ_STR(json_error("{\"a\":1 \"b\":2}"), "invalid JSON at byte 7: expected ',' or '}'");
	CHECK_EQ_STR(json_error("{\"a\":1,\"a\":2}"), "invalid JSON at byte 7: duplicate key \"a\"");
	CHECK_EQ_STR(json_error("1 2"), "invalid JSON at byte 2: unexpected data after the value");
	CHECK_EQ_STR(json_error("[1] x"), "invalid JSON at byte 4: unexpected data after the value");
	CHECK_EQ_STR(json_error("tru"), "invalid JSON at byte 0: invalid literal");
	CHECK_EQ_STR(json_error("nul"), "invalid JSON at byte 0: invalid literal");
	CHECK_EQ_STR(json_error("truex"), "invalid JSON at byte 4: unexpected data after the value");
	CHECK_EQ_STR(json_error("True"), "invalid JSON at byte 0: unexpected character 'T'");
	reset();
}

UNIT_TEST(json_duplicate_keys_in_large_objects)
{
	char		b[2048];
	size_t		n = 0;
	int			i;

	n += snprintf(b + n, sizeof(b) - n, "{");
	for (i = 0; i < 40; i++)
		n += snprintf(b + n, sizeof(b) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
	n += snprintf(b + n, sizeof(b) - n, "}");
	CHECK(Jraw(b, n) != NULL && cdp_json_get(Jraw(b, n), "k39")->number == 39);
	/* k7 repeated twice, k3 once later: the first repeat in the text is named. */
	n -= 1;
	n += snprintf(b + n, sizeof(b) - n, ",\"k7\":1,\"k3\":2,\"k7\":3}");
	CHECK(Jraw(b, n) == NULL);
	CHECK(strstr(err, "duplicate key \"k7\"") != NULL);
	reset();
}

UNIT_TEST(json_nesting_limit)
{
	char		b[200];
	char		o[300];
	int			i;

	for (i = 0; i < 64; i++)
	{
		b[i] = '[';
		b[127 - i] = ']';
	}
	CHECK(Jraw(b, 128) != NULL);
	for (i = 0; i < 65; i++)
	{
		b[i] = '[';
		b[129 - i] = ']';
	}
	CHECK(Jraw(b, 130) == NULL);
	CHECK_EQ_STR(err, "invalid JSON at byte 64: nesting deeper than 64 levels");
	for (i = 0; i < 65; i++)
		memcpy(o + 4 * i, "{\"\":", 4);
	CHECK(Jraw(o, 4 * 65) == NULL);	/* refused before the rest is needed */
	CHECK_EQ_STR(err, "invalid JSON at byte 256: nesting deeper than 64 levels");
	CHECK(Jraw(o, 4 * 64) == NULL);
	CHECK_EQ_STR(err, "invalid JSON at byte 256: unexpected end of input");
	/* Deep input is refused without deep recursion. */
	{
		static char deep[100000];

		memset(deep, '[', sizeof(deep));
		CHECK(Jraw(deep, sizeof(deep)) == NULL);
		CHECK_EQ_STR(err, "invalid JSON at byte 64: nesting deeper than 64 levels");
	}
	reset();
}

UNIT_TEST(json_error_buffer)
{
	char		small[12];

	memset(small, 'x', sizeof(small));
	CHECK(cdp_json_parse(&arena, "[", 1, small, 0) == NULL);
	CHECK(small[0] == 'x');
	CHECK(cdp_json_parse(&arena, "[", 1, small, sizeof(small)) == NULL);
	CHECK_EQ_STR(small, "invalid ...");
	CHECK(cdp_json_parse(&arena, "[", 1, small, 3) == NULL);
	CHECK_EQ_STR(small, "in");
	CHECK(cdp_json_parse(&arena, "[", 1, NULL, 100) == NULL);
	reset();
}

UNIT_TEST(always_true_rules)
{
	CHECK_EQ_INT(ev("null", FACTS), 1);
	CHECK_EQ_INT(ev("true", NULL), 1);
	CHECK_EQ_INT(ev(" true ", "[]"), 1);
	CHECK_EQ_STR(why, "");
	CHECK_EQ_STR(rule_error("false"),
				 "eligibility: a rule must be an object, null or true, got a boolean");
	CHECK_EQ_STR(rule_error("[]"),
				 "eligibility: a rule must be an object, null or true, got an empty array");
	CHECK_EQ_STR(rule_error("'x'"),
				 "eligibility: a rule must be an object, null or true, got a string");
	CHECK_EQ_INT(cdp_rule_eval(NULL, NULL, why, sizeof(why)), 0);
	CHECK_EQ_STR(why, "no compiled rule");
	reset();
}

UNIT_TEST(number_facts)
{
	static const char *const names[] = {
		"clv", "p_alive", "orders", "revenue", "days_since_last_purchase",
		"days_since_last_contact"
	};
	static const double values[] = {42.5, 0.8, 3, 120, 40, 2};
	char		r[256];
	int			i;

	for (i = 0; i < 6; i++)
	{
		double		x = values[i];

#define T(op, operand, expected) \
		snprintf(r, sizeof(r), "{'fact': '%s', '" op "': %s}", names[i], operand); \
		CHECK_EQ_INT(ev(r, FACTS), expected)
		char		v[32], lo[32], hi[32], arr[80], arr2[80];

		snprintf(v, sizeof(v), "%.17g", x);
		snprintf(lo, sizeof(lo), "%.17g", x - 1);
		snprintf(hi, sizeof(hi), "%.17g", x + 1);
		snprintf(arr, sizeof(arr), "[%s, %s]", lo, v);
		snprintf(arr2, sizeof(arr2), "[%s, %s]", lo, hi);
		T("eq", v, 1);
		T("eq", hi, 0);
		T("ne", v, 0);
		T("ne", lo, 1);
		T("lt", hi, 1);
		T("lt", v, 0);
		T("lte", v, 1);
		T("lte", lo, 0);
		T("gt", lo, 1);
		T("gt", v, 0);
		T("gte", v, 1);
		T("gte", hi, 0);
		T("in", arr, 1);
		T("in", arr2, 0);
		T("not_in", arr2, 1);
		T("not_in", arr, 0);
		T("exists", "true", 1);
		T("exists", "false", 0);
#undef T
	}
	/* Exact equality of doubles. */
	CHECK_EQ_INT(ev("{'fact': 'clv', 'eq': 42.50000000000001}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'clv', 'eq': 4.25e1}", FACTS), 1);
	reset();
}

UNIT_TEST(keyed_number_facts)
{
	CHECK_EQ_INT(ev("{'fact': 'days_since_last_contact', 'key': 'sms', 'gte': 30}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'days_since_last_contact', 'key': 'email', 'eq': 2}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'days_since_last_contact', 'key': 'push', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'days_since_last_contact', 'key': 'push', 'gte': 0}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'purchase', 'gte': 3}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'view', 'in': [9, 10]}", FACTS), 1);
	/* An absent count is 0, also when the whole object is absent. */
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'refund', 'eq': 0}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'refund', 'exists': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'nul', 'eq': 0}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'refund', 'eq': 0}", "{}"), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'refund', 'eq': 0}", "{'events': null}"), 1);
	/* A count of another type, or a box that is not an object, is missing. */
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'bad', 'eq': 0}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'bad', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'events', 'key': 'x', 'exists': false}", "{'events': [1]}"), 1);
	CHECK_EQ_INT(ev("{'fact': 'interest', 'key': 'shoes', 'gt': 0.5}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'interest', 'key': 'hats', 'lt': 0.1}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'interest', 'key': 'hats', 'lt': 0.1}", "[]"), 1);
	reset();
}

UNIT_TEST(text_facts)
{
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'eq': 'Lost'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'eq': 'lost'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'eq': 'Los'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'ne': 'Champions'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'ne': 'Lost'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'in': ['Champions', 'Lost']}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'not_in': ['Champions', 'Lost']}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'not_in': ['Champions']}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'exists': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'eq': 'web'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'in': ['store', 'app']}", FACTS), 0);
	/* Strings with a NUL compare by all their bytes. */
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'eq': 'a\\u0000b'}",
					"{'last_channel': 'a\\u0000b'}"), 1);
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'eq': 'a\\u0000c'}",
					"{'last_channel': 'a\\u0000b'}"), 0);
	/* Another type is missing. */
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'ne': 'web'}", "{'last_channel': 3}"), 0);
	CHECK_EQ_INT(ev("{'fact': 'last_channel', 'exists': false}", "{'last_channel': 3}"), 1);
	reset();
}

UNIT_TEST(boolean_facts)
{
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'checkout', 'eq': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'browse', 'eq': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'signup', 'eq': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'signup', 'ne': true}", FACTS), 1);
	/* Never missing. */
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'signup', 'exists': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'x', 'eq': false}", "7"), 1);
	CHECK_EQ_INT(ev("{'fact': 'open_break', 'key': 'x', 'eq': false}", NULL), 1);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'email', 'eq': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'sms', 'eq': true}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'sms', 'ne': true}", FACTS), 1);
	/* Absent or of another type: missing, so neither eq nor ne. */
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'post', 'eq': false}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'post', 'ne': true}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'post', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'push', 'exists': true}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'consent', 'key': 'email', 'exists': true}", FACTS), 1);
	reset();
}

UNIT_TEST(list_facts)
{
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'checkout', 'contains': 'p2'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'checkout', 'contains': 'p3'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'checkout', 'in': ['p9', 'p1']}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'checkout', 'in': ['p9']}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'checkout', 'exists': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'browse', 'exists': true}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'browse', 'exists': false}", FACTS), 1);
	/* Absent: an empty list. */
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'signup', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'signup', 'contains': 'p1'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'signup', 'in': ['p1']}", NULL), 0);
	/* Not an array: missing. */
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'odd', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'odd', 'contains': 'p1'}", FACTS), 0);
	/* Items other than strings never match. */
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'c', 'contains': '1'}",
					"{'open_breaks': {'c': [1, null, {}, ['1'], '1']}}"), 1);
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'c', 'contains': '2'}",
					"{'open_breaks': {'c': [2, null, {}, ['2']]}}"), 0);
	reset();
}

/* The event that fired a trigger: its properties, type, channel, amount. */
UNIT_TEST(event_facts)
{
	const char *fx = "{'event': {'type': 'complaint', 'amount': 120, 'sku': 'p1', 'nul': null}}";

	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'type', 'eq': 'complaint'}", fx), 1);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'amount', 'gte': 100}", fx), 1);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'amount', 'gt': 120}", fx), 0);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'sku', 'in': ['p1', 'p2']}", fx), 1);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'sku', 'exists': true}", fx), 1);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'nul', 'exists': true}", fx), 0);
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'other', 'exists': false}", fx), 1);
	/* no event (a decision outside a trigger): the condition does not hold */
	CHECK_EQ_INT(ev("{'fact': 'event', 'key': 'sku', 'eq': 'p1'}", FACTS), 0);
	/* the key is required */
	CHECK_EQ_INT(ev("{'fact': 'event', 'eq': 'p1'}", fx), -1);
	reset();
}

UNIT_TEST(trait_facts)
{
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'eq': 'gold'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'ne': 'silver'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'gt': 'bronze'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'lt': 'golden'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'lte': 'gold'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'gte': 'gold'}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'gte': 'golf'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'gte': 18}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'lt': 34}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'eq': 34}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'vip', 'eq': true}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'vip', 'ne': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'in': [1, true, 'gold']}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'in': ['34', true]}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'not_in': ['34', 35]}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'not_in': [34]}", FACTS), 0);
	/* Type mismatches do not hold. */
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'eq': '34'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'age', 'ne': '34'}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'gt': 1}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'lt': 1}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'vip', 'gt': 0}", FACTS), 0);
	/* null, objects and absent traits are missing. */
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'nothing', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'obj', 'exists': false}", FACTS), 1);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'none', 'exists': true}", FACTS), 0);
	CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 'tier', 'exists': true}", FACTS), 1);
	reset();
}

UNIT_TEST(missing_facts_fail_every_operator_but_exists_false)
{
	static const char *const facts[] = {
		"{}", "[]", "null", "'str'", "{'clv': null}", "{'clv': '42'}",
		"{'clv': [42]}", "{'traits': 3}", "{'traits': {'t': null}}", NULL
	};
	static const char *const rules[] = {
		"{'fact': 'clv', 'eq': 1}", "{'fact': 'clv', 'ne': 1}",
		"{'fact': 'clv', 'lt': 1}", "{'fact': 'clv', 'lte': 1}",
		"{'fact': 'clv', 'gt': 1}", "{'fact': 'clv', 'gte': 1}",
		"{'fact': 'clv', 'in': [1]}", "{'fact': 'clv', 'not_in': [1]}",
		"{'fact': 'clv', 'exists': true}",
		"{'fact': 'trait', 'key': 't', 'ne': 'x'}",
		"{'fact': 'trait', 'key': 't', 'not_in': ['x']}",
		"{'fact': 'rfm_segment', 'ne': 'x'}",
		"{'fact': 'consent', 'key': 'email', 'ne': true}",
		"{'fact': 'days_since_last_contact', 'key': 'email', 'ne': 1}",
	};
	size_t		i;
	size_t		j;

	for (i = 0; i < sizeof(facts) / sizeof(facts[0]); i++)
	{
		for (j = 0; j < sizeof(rules) / sizeof(rules[0]); j++)
			CHECK_EQ_INT(ev(rules[j], facts[i]), 0);
		CHECK_EQ_INT(ev("{'fact': 'clv', 'exists': false}", facts[i]), 1);
		CHECK_EQ_INT(ev("{'fact': 'trait', 'key': 't', 'exists': false}", facts[i]), 1);
		/* not inverts what its child returns, SQL-like or not. */
		CHECK_EQ_INT(ev("{'not': {'fact': 'clv', 'eq': 1}}", facts[i]), 1);
		CHECK_EQ_INT(ev("{'not': {'fact': 'clv', 'ne': 1}}", facts[i]), 1);
	}
	reset();
}

UNIT_TEST(combinations)
{
	CHECK_EQ_INT(ev("{'all': []}", FACTS), 1);
	CHECK_EQ_INT(ev("{'any': []}", FACTS), 0);
	CHECK_EQ_STR(why, "eligibility.any: none of 0 held");
	CHECK_EQ_INT(ev("{'not': {'any': []}}", FACTS), 1);
	CHECK_EQ_INT(ev("{'not': {'all': []}}", FACTS), 0);
	CHECK_EQ_STR(why, "eligibility.not.all: all of 0 held");
	CHECK_EQ_INT(ev("{'all': [{'fact': 'clv', 'gt': 40}, {'fact': 'orders', 'eq': 3}]}", FACTS), 1);
	CHECK_EQ_INT(ev("{'all': [{'fact': 'clv', 'gt': 40}, {'fact': 'orders', 'eq': 4}]}", FACTS), 0);
	CHECK_EQ_INT(ev("{'any': [{'fact': 'clv', 'gt': 50}, {'fact': 'orders', 'eq': 3}]}", FACTS), 1);
	CHECK_EQ_INT(ev("{'any': [{'fact': 'clv', 'gt': 50}, {'fact': 'orders', 'eq': 4}]}", FACTS), 0);
	CHECK_EQ_INT(ev("{'not': {'not': {'fact': 'clv', 'gt': 40}}}", FACTS), 1);
	CHECK_EQ_INT(ev("{'all': [{'any': [{'not': {'fact': 'rfm_segment', 'eq': 'Lost'}},"
					" {'fact': 'events', 'key': 'purchase', 'gte': 3}]},"
					" {'not': {'any': [{'fact': 'consent', 'key': 'sms', 'eq': true}]}}]}",
					FACTS), 1);
	reset();
}

UNIT_TEST(validation_errors)
{
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'gt': 1}, {'fact': 'orders', 'gt': 1},"
							" {'fact': 'foo', 'eq': 1}]}"),
				 "eligibility.all[2]: unknown fact \"foo\"");
	CHECK_EQ_STR(rule_error("{'any': [{'not': {'fact': 'clv', 'gte': 'x'}}]}"),
				 "eligibility.any[0].not: \"gte\" needs a number, got a string");
	CHECK_EQ_STR(rule_error("{}"),
				 "eligibility: a rule node needs one of \"all\", \"any\", \"not\" or \"fact\"");
	CHECK_EQ_STR(rule_error("{'key': 'x', 'eq': 1}"),
				 "eligibility: a rule node needs one of \"all\", \"any\", \"not\" or \"fact\"");
	CHECK_EQ_STR(rule_error("{'all': [], 'any': []}"),
				 "eligibility: a rule node takes only one of \"all\", \"any\", \"not\" or \"fact\"");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'gt': 1}, {'fact': 'clv', 'gt': 1, 'foo': 2}]}"),
				 "eligibility.all[1]: unknown key \"foo\"");
	CHECK_EQ_STR(rule_error("{'all': [], 'eq': 1}"), "eligibility: unknown key \"eq\"");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'trait', 'eq': 1}]}"),
				 "eligibility.all[0]: fact \"trait\" needs a \"key\"");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'key': 'x', 'eq': 1}]}"),
				 "eligibility.all[0]: fact \"clv\" takes no \"key\"");
	CHECK_EQ_STR(rule_error("{'all': [true, true, true, {'fact': 'clv', 'gt': 1, 'lt': 5}]}"),
				 "eligibility.all[0]: a rule node must be an object, got a boolean");
	CHECK_EQ_STR(rule_error("{'all': [{'all': []}, {'any': []}, {'not': {'all': []}},"
							" {'fact': 'clv', 'gt': 1, 'lt': 5}]}"),
				 "eligibility.all[3]: one operator expected, found 2");
	CHECK_EQ_STR(rule_error("{'fact': 'clv'}"), "eligibility: one operator expected, found 0");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'contains': 'x'}]}"),
				 "eligibility.all[0]: operator \"contains\" does not apply to number fact \"clv\"");
	CHECK_EQ_STR(rule_error("{'fact': 'rfm_segment', 'lt': 'x'}"),
				 "eligibility: operator \"lt\" does not apply to text fact \"rfm_segment\"");
	CHECK_EQ_STR(rule_error("{'fact': 'consent', 'key': 'sms', 'in': [true]}"),
				 "eligibility: operator \"in\" does not apply to boolean fact \"consent\"");
	CHECK_EQ_STR(rule_error("{'fact': 'break_products', 'key': 'c', 'eq': 'x'}"),
				 "eligibility: operator \"eq\" does not apply to list fact \"break_products\"");
	CHECK_EQ_STR(rule_error("{'fact': 'break_products', 'key': 'c', 'not_in': ['x']}"),
				 "eligibility: operator \"not_in\" does not apply to list fact \"break_products\"");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': 'c', 'contains': 'x'}"),
				 "eligibility: operator \"contains\" does not apply to scalar fact \"trait\"");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'gt': 1}, "),
				 "eligibility: invalid JSON at byte 35: unexpected end of input");
	CHECK_EQ_STR(rule_error("{'all': [{'fact': 'clv', 'gt': 1, 'gt': 2}]}"),
				 "eligibility: invalid JSON at byte 34: duplicate key \"gt\"");
	CHECK_EQ_STR(rule_error("{'all': {}}"), "eligibility: \"all\" needs an array, got an object");
	CHECK_EQ_STR(rule_error("{'any': 1}"), "eligibility: \"any\" needs an array, got a number");
	CHECK_EQ_STR(rule_error("{'not': [{'fact': 'clv', 'gt': 1}]}"),
				 "eligibility.not: a rule node must be an object, got an array");
	CHECK_EQ_STR(rule_error("{'not': null}"),
				 "eligibility.not: a rule node must be an object, got null");
	CHECK_EQ_STR(rule_error("{'fact': 3, 'eq': 1}"), "eligibility: \"fact\" needs a string, got a number");
	CHECK_EQ_STR(rule_error("{'fact': 'Clv', 'eq': 1}"), "eligibility: unknown fact \"Clv\"");
	CHECK_EQ_STR(rule_error("{'fact': 'a\\'b\\\\\\n', 'eq': 1}"),
				 "eligibility: unknown fact \"a\\\"b\\\\\\u000a\"");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': 1, 'eq': 1}"),
				 "eligibility: \"key\" needs a string, got a number");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': '', 'eq': 1}"), "eligibility: \"key\" is empty");
	CHECK_EQ_STR(rule_error("{'fact': 'clv', 'in': []}"),
				 "eligibility: \"in\" needs a non-empty array, got an empty array");
	CHECK_EQ_STR(rule_error("{'fact': 'clv', 'not_in': 3}"),
				 "eligibility: \"not_in\" needs a non-empty array, got a number");
	CHECK_EQ_STR(rule_error("{'fact': 'clv', 'in': [1, 2, '3']}"),
				 "eligibility: \"in\"[2] needs a number, got a string");
	CHECK_EQ_STR(rule_error("{'fact': 'rfm_segment', 'in': ['a', null]}"),
				 "eligibility: \"in\"[1] needs a string, got null");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': 'k', 'in': ['a', 1, true, []]}"),
				 "eligibility: \"in\"[3] needs a string, number or boolean, got an empty array");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': 'k', 'eq': null}"),
				 "eligibility: \"eq\" needs a string, number or boolean, got null");
	CHECK_EQ_STR(rule_error("{'fact': 'trait', 'key': 'k', 'lt': true}"),
				 "eligibility: \"lt\" needs a number or a string, got a boolean");
	CHECK_EQ_STR(rule_error("{'fact': 'consent', 'key': 'k', 'eq': 'yes'}"),
				 "eligibility: \"eq\" needs true or false, got a string");
	CHECK_EQ_STR(rule_error("{'fact': 'clv', 'exists': 1}"),
				 "eligibility: \"exists\" needs true or false, got a number");
	CHECK_EQ_STR(rule_error("{'fact': 'break_products', 'key': 'c', 'contains': ['x']}"),
				 "eligibility: \"contains\" needs a string, got an array");
	CHECK_EQ_STR(rule_error("{'fact': 'rfm_segment', 'eq': {'a': 1}}"),
				 "eligibility: \"eq\" needs a string, got an object");
	/* Another root name. */
	CHECK(cdp_rule_compile(&arena, "{}", 2, "offer 7", err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, "offer 7: a rule node needs one of \"all\", \"any\", \"not\" or \"fact\"");
	CHECK(cdp_rule_compile(&arena, "{}", 2, NULL, err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, ": a rule node needs one of \"all\", \"any\", \"not\" or \"fact\"");
	reset();
}

UNIT_TEST(reasons)
{
	CHECK_EQ_STR(reason("{'all': [{'fact': 'clv', 'gt': 1},"
						" {'fact': 'rfm_segment', 'in': ['Champions', 'Loyal']}]}"),
				 "eligibility.all[1]: rfm_segment is \"Lost\", needs in [\"Champions\", \"Loyal\"]");
	CHECK_EQ_STR(reason("{'all': [{'fact': 'clv', 'gte': 100}]}"),
				 "eligibility.all[0]: clv is 42.5, needs gte 100");
	CHECK_EQ_STR(reason("{'all': [{'fact': 'clv', 'gt': 1}, {'fact': 'clv', 'gt': 1},"
						" {'fact': 'trait', 'key': 'level', 'eq': 'gold'}]}"),
				 "eligibility.all[2]: trait \"level\" is missing, needs eq \"gold\"");
	CHECK_EQ_STR(reason("{'all': [{'fact': 'clv', 'gt': 1},"
						" {'not': {'fact': 'days_since_last_contact', 'lt': 7}}]}"),
				 "eligibility.all[1].not: days_since_last_contact holds lt 7 (is 2)");
	CHECK_EQ_STR(reason("{'any': [{'fact': 'orders', 'gt': 5}, {'fact': 'clv', 'gt': 100},"
						" {'fact': 'consent', 'key': 'sms', 'eq': true}]}"),
				 "eligibility.any: none of 3 held (first: eligibility.any[0]: orders is 3, needs gt 5)");
	CHECK_EQ_STR(reason("{'fact': 'consent', 'key': 'post', 'exists': true}"),
				 "eligibility: consent \"post\" is missing, needs exists true");
	CHECK_EQ_STR(reason("{'not': {'fact': 'consent', 'key': 'post', 'exists': false}}"),
				 "eligibility.not: consent \"post\" holds exists false (is missing)");
	CHECK_EQ_STR(reason("{'fact': 'break_products', 'key': 'checkout', 'contains': 'p3'}"),
				 "eligibility: break_products \"checkout\" is [\"p1\", \"p2\"], needs contains \"p3\"");
	CHECK_EQ_STR(reason("{'fact': 'p_alive', 'lt': 0.1}"),
				 "eligibility: p_alive is 0.8, needs lt 0.1");
	CHECK_EQ_STR(reason("{'fact': 'trait', 'key': 'vip', 'eq': false}"),
				 "eligibility: trait \"vip\" is true, needs eq false");
	/* not of a composite: what held, or the child that made it hold. */
	CHECK_EQ_STR(reason("{'not': {'all': [{'fact': 'clv', 'gt': 1}]}}"),
				 "eligibility.not.all: all of 1 held");
	CHECK_EQ_STR(reason("{'not': {'any': [{'fact': 'clv', 'gt': 100}, {'fact': 'orders', 'eq': 3}]}}"),
				 "eligibility.not.any[1]: orders holds eq 3 (is 3)");
	CHECK_EQ_STR(reason("{'not': {'not': {'fact': 'clv', 'gt': 100}}}"),
				 "eligibility.not.not: clv is 42.5, needs gt 100");
	/* A nested any within all. */
	CHECK_EQ_STR(reason("{'all': [{'any': [{'fact': 'clv', 'gt': 100}]}]}"),
				 "eligibility.all[0].any: none of 1 held (first: eligibility.all[0].any[0]: "
				 "clv is 42.5, needs gt 100)");
	reset();
}

UNIT_TEST(reasons_are_bounded)
{
	char		small[16];
	char		longs[400];
	const CdpRule *r;
	const CdpJson *f;

	CHECK_EQ_STR(reason("{'fact': 'clv', 'in': [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}"),
				 "eligibility: clv is 42.5, needs in [1, 2, 3, 4, 5, 6, 7, 8, ...]");
	strcpy(longs, "{'fact': 'rfm_segment', 'eq': '");
	memset(longs + strlen(longs), 'a', 200);
	strcpy(longs + 231, "'}");
	CHECK_EQ_STR(reason(longs),
				 "eligibility: rfm_segment is \"Lost\", needs eq "
				 "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
	/* Strings are cut between UTF-8 characters. */
	CHECK_EQ_INT(ev("{'fact': 'rfm_segment', 'eq': 'x'}",
					"{'rfm_segment': 'a\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
					"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
					"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
					"\\u00e9\\u00e9\\u00e9'}"), 0);
	CHECK(strstr(why, "\"a\xc3\xa9") != NULL);
	CHECK(strstr(why, "\xc3\xa9\xc3\xa9...\", needs eq \"x\"") != NULL);
	CHECK(strstr(why, "\xc3...") == NULL);
	/* Objects and nested arrays are elided. */
	CHECK_EQ_INT(ev("{'fact': 'break_products', 'key': 'c', 'contains': 'x'}",
					"{'open_breaks': {'c': [{'a': 1}, [1], [], {}, null, true, 1.25]}}"), 0);
	CHECK_EQ_STR(why, "eligibility: break_products \"c\" is [{...}, [...], [], {}, null, true, 1.25],"
				 " needs contains \"x\"");

	/* The buffer: nothing written when whylen is 0, cut with "..." otherwise. */
	r = R("{'fact': 'clv', 'gte': 100}");
	f = J(FACTS);
	memset(small, 'x', sizeof(small));
	CHECK_EQ_INT(cdp_rule_eval(r, f, small, 0), 0);
	CHECK(small[0] == 'x');
	CHECK_EQ_INT(cdp_rule_eval(r, f, NULL, 10), 0);
	CHECK_EQ_INT(cdp_rule_eval(r, f, small, sizeof(small)), 0);
	CHECK_EQ_STR(small, "eligibility:...");
	CHECK_EQ_INT(cdp_rule_eval(r, f, small, 1), 0);
	CHECK_EQ_STR(small, "");
	CHECK_EQ_INT(cdp_rule_eval(r, f, small, 3), 0);
	CHECK_EQ_STR(small, "el");
	CHECK_EQ_INT(cdp_rule_eval(r, f, small, 4), 0);
	CHECK_EQ_STR(small, "...");
	reset();
}

/* Appends to a growing text in the arena, doubling when full. */
typedef struct Text
{
	char	   *s;
	size_t		len;
	size_t		cap;
} Text;

static void
put(Text *t, const char *s)
{
	size_t		n = strlen(s);

	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = (t->len + n + 1) * 2;
		char	   *b = test_alloc(NULL, cap);

		if (t->len > 0)
			memcpy(b, t->s, t->len);
		t->s = b;
		t->cap = cap;
	}
	memcpy(t->s + t->len, s, n + 1);
	t->len += n;
}

UNIT_TEST(limits)
{
	Text		t = {NULL, 0, 0};
	char		b[64];
	int			i;

	/* 32 levels of rule nodes, not 33. */
	for (i = 0; i < 31; i++)
		put(&t, "{\"not\":");
	put(&t, "{\"fact\":\"clv\",\"gt\":1}");
	for (i = 0; i < 31; i++)
		put(&t, "}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) != NULL);
	t.len = 0;
	for (i = 0; i < 32; i++)
		put(&t, "{\"not\":");
	put(&t, "{\"fact\":\"clv\",\"gt\":1}");
	for (i = 0; i < 32; i++)
		put(&t, "}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, "r.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not"
				 ".not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not: "
				 "rules nest deeper than 32 levels");
	/* Nested "all" reaches 32 levels within the JSON nesting limit. */
	t.len = 0;
	for (i = 0; i < 31; i++)
		put(&t, "{\"all\":[");
	put(&t, "{\"fact\":\"clv\",\"in\":[1]}");
	for (i = 0; i < 31; i++)
		put(&t, "]}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) != NULL);

	/* 1000 rule nodes, not 1001. */
	t.len = 0;
	put(&t, "{\"all\":[");
	for (i = 0; i < 999; i++)
		put(&t, i ? ",{\"fact\":\"clv\",\"gt\":1}" : "{\"fact\":\"clv\",\"gt\":1}");
	put(&t, "]}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) != NULL);
	t.len -= 2;
	put(&t, ",{\"fact\":\"clv\",\"gt\":1}]}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, "r.all[999]: more than 1000 rule nodes");

	/* 1000 items of "in", not 1001. */
	t.len = 0;
	put(&t, "{\"fact\":\"orders\",\"in\":[0");
	for (i = 1; i < 1000; i++)
	{
		snprintf(b, sizeof(b), ",%d", i);
		put(&t, b);
	}
	put(&t, "]}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) != NULL);
	CHECK_EQ_INT(cdp_rule_eval(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)),
							   J(FACTS), why, sizeof(why)), 1);
	t.len -= 2;
	put(&t, ",1000]}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, "r: \"in\" has more than 1000 items");

	/* Keys of 200 bytes, not 201. */
	t.len = 0;
	put(&t, "{\"fact\":\"trait\",\"eq\":1,\"key\":\"");
	for (i = 0; i < 200; i++)
		put(&t, "k");
	put(&t, "\"}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) != NULL);
	t.len -= 2;
	put(&t, "k\"}");
	CHECK(cdp_rule_compile(&arena, t.s, t.len, "r", err, sizeof(err)) == NULL);
	CHECK_EQ_STR(err, "r: \"key\" is longer than 200 bytes");
	reset();
}

/*
 * Fuzzing: random documents, valid rules built at random, and mutations of
 * both, fed to the parser and the compiler; compiled rules are evaluated
 * against mutated facts.  Inputs are exact-size heap copies, so that any
 * read past len is caught.
 */

static uint64_t rng_state;

static uint32_t
rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n > 0 ? (uint32_t) (rng_state % n) : 0;
}

/* Facts for generated rules: name, type (n, t, b, l, s) and key (-, ?, k). */
static const char *const fuzz_facts[][3] = {
	{"rfm_segment", "t", "-"}, {"last_channel", "t", "-"}, {"clv", "n", "-"},
	{"p_alive", "n", "-"}, {"orders", "n", "-"}, {"revenue", "n", "-"},
	{"days_since_last_purchase", "n", "-"}, {"days_since_last_contact", "n", "?"},
	{"events", "n", "k"}, {"interest", "n", "k"}, {"trait", "s", "k"},
	{"open_break", "b", "k"}, {"break_products", "l", "k"}, {"consent", "b", "k"},
};

/* Operators each type takes, with operands that suit them. */
static const char *const fuzz_conditions[][2] = {
	{"n", "\"eq\": 3"}, {"n", "\"ne\": 42.5"}, {"n", "\"lt\": 10"}, {"n", "\"lte\": 0.8"},
	{"n", "\"gt\": 1"}, {"n", "\"gte\": 2"}, {"n", "\"in\": [3, 40, 120]"},
	{"n", "\"not_in\": [0, 2]"}, {"n", "\"exists\": true"},
	{"t", "\"eq\": \"Lost\""}, {"t", "\"ne\": \"web\""}, {"t", "\"in\": [\"web\", \"Lost\"]"},
	{"t", "\"not_in\": [\"x\"]"}, {"t", "\"exists\": false"},
	{"b", "\"eq\": true"}, {"b", "\"ne\": false"}, {"b", "\"exists\": true"},
	{"l", "\"contains\": \"p1\""}, {"l", "\"in\": [\"p2\", \"p9\"]"}, {"l", "\"exists\": true"},
	{"s", "\"eq\": \"gold\""}, {"s", "\"ne\": 34"}, {"s", "\"lt\": \"h\""}, {"s", "\"gte\": 18"},
	{"s", "\"in\": [true, 34, \"gold\"]"}, {"s", "\"not_in\": [\"\\u00e9\\ud83d\\ude00\"]"},
	{"s", "\"exists\": true"},
};

/* Appends a random valid rule node. */
static void
random_rule(Text *t, int depth)
{
	int			k = depth > 4 ? 3 : (int) rnd(5);
	int			i;
	int			n;
	int			f;
	int			c;

	if (k == 0 || k == 1)
	{
		put(t, k == 0 ? "{\"all\": [" : "{\"any\": [");
		n = (int) rnd(4);
		for (i = 0; i < n; i++)
		{
			if (i > 0)
				put(t, ", ");
			random_rule(t, depth + 1);
		}
		put(t, "]}");
		return;
	}
	if (k == 2)
	{
		put(t, "{\"not\": ");
		random_rule(t, depth + 1);
		put(t, "}");
		return;
	}
	f = (int) rnd(sizeof(fuzz_facts) / sizeof(fuzz_facts[0]));
	put(t, "{\"fact\": \"");
	put(t, fuzz_facts[f][0]);
	put(t, "\"");
	if (fuzz_facts[f][2][0] == 'k' || (fuzz_facts[f][2][0] == '?' && rnd(2)))
	{
		static const char *const keys[] = {"email", "checkout", "tier", "purchase", "age", "x"};

		put(t, ", \"key\": \"");
		put(t, keys[rnd(6)]);
		put(t, "\"");
	}
	do
		c = (int) rnd(sizeof(fuzz_conditions) / sizeof(fuzz_conditions[0]));
	while (fuzz_conditions[c][0][0] != fuzz_facts[f][1][0]);
	put(t, ", ");
	put(t, fuzz_conditions[c][1]);
	put(t, "}");
}

/* Mutates len bytes of b (capacity cap) in place; returns the new length. */
static size_t
mutate(char *b, size_t len, size_t cap)
{
	static const char alphabet[] = "{}[]\",:0123456789-+.eE \\u\"tfnrlaxD\x01\x80\xff";
	int			rounds = 1 + (int) rnd(4);

	while (rounds-- > 0)
	{
		size_t		at = len > 0 ? rnd((uint32_t) len) : 0;

		switch (rnd(5))
		{
			case 0:				/* overwrite a byte */
				if (len > 0)
					b[at] = rnd(4) == 0 ? (char) rnd(256) :
						alphabet[rnd(sizeof(alphabet) - 1)];
				break;
			case 1:				/* insert a byte */
				if (len < cap)
				{
					memmove(b + at + 1, b + at, len - at);
					b[at] = alphabet[rnd(sizeof(alphabet) - 1)];
					len++;
				}
				break;
			case 2:				/* delete a run */
				if (len > 0)
				{
					size_t		n = 1 + rnd(8);

					if (n > len - at)
						n = len - at;
					memmove(b + at, b + at + n, len - at - n);
					len -= n;
				}
				break;
			case 3:				/* truncate */
				len = at;
				break;
			case 4:				/* duplicate a run */
				{
					size_t		n = 1 + rnd(16);

					if (n > len - at)
						n = len - at;
					if (len + n <= cap)
					{
						memmove(b + at + n, b + at, len - at);
						len += n;
					}
				}
				break;
		}
	}
	return len;
}

/* An exact-size heap copy of n bytes (AddressSanitizer catches reads past them). */
static char *
exact_copy(const char *s, size_t n)
{
	char	   *b = malloc(n > 0 ? n : 1);

	if (b == NULL)
		abort();
	if (n > 0)
		memcpy(b, s, n);
	return b;
}

/* Whether a message is NUL-terminated within cap bytes. */
static int
terminated(const char *m, size_t cap)
{
	return cap == 0 || memchr(m, '\0', cap) != NULL;
}

UNIT_TEST(fuzz_parser_and_compiler)
{
	static char buf[8192];
	static char msg[300];
	const CdpJson *facts_doc[4];
	int			compiled = 0;
	int			held = 0;
	int			i;
	size_t		facts_len = strlen(FACTS);

	rng_state = UINT64_C(0x9E3779B97F4A7C15);
	for (i = 0; i < 20000; i++)
	{
		Text		t = {NULL, 0, 0};
		size_t		len;
		size_t		msglen = rnd(sizeof(msg));
		char	   *in;
		CdpRule    *r;
		int			kind = (int) rnd(4);
		int			j;

		if (kind == 0)
		{
			/* Random bytes, mostly JSON punctuation. */
			len = rnd(64);
			for (j = 0; j < (int) len; j++)
				buf[j] = rnd(3) == 0 ? (char) rnd(256) : "{}[]\",:1e-.tnu\\ \"a"[rnd(18)];
		}
		else
		{
			random_rule(&t, 1);
			len = t.len < sizeof(buf) ? t.len : sizeof(buf);
			memcpy(buf, t.s, len);
			if (kind >= 2)
				len = mutate(buf, len, sizeof(buf));
		}

		in = exact_copy(buf, len);
		memset(msg, 'x', sizeof(msg));
		(void) cdp_json_parse(&arena, in, len, msg, msglen);
		CHECK(terminated(msg, msglen));
		r = cdp_rule_compile(&arena, in, len, "eligibility", msg, msglen);
		CHECK(terminated(msg, msglen));
		if (kind == 1 && r == NULL)
		{
			/* Generated rules are valid. */
			fprintf(stderr, "  %.*s: %.*s\n", (int) len, in, (int) msglen, msg);
			CHECK(r != NULL);
		}
		free(in);

		/* Facts: the sample, a mutation of it, and odd documents. */
		memcpy(buf, q(FACTS), facts_len);
		len = mutate(buf, facts_len, sizeof(buf));
		in = exact_copy(buf, len);
		facts_doc[0] = J(FACTS);
		facts_doc[1] = cdp_json_parse(&arena, in, len, NULL, 0);
		facts_doc[2] = J("[1, {'clv': 1}]");
		facts_doc[3] = NULL;
		free(in);

		if (r != NULL)
		{
			int			k;

			compiled++;
			for (k = 0; k < 4; k++)
			{
				int			res;

				memset(msg, 'x', sizeof(msg));
				res = cdp_rule_eval(r, facts_doc[k], msg, msglen);
				CHECK(res == 0 || res == 1);
				CHECK(terminated(msg, msglen));
				if (res == 0 && msglen > 20)
					CHECK(strncmp(msg, "eligibility", 11) == 0);
				held += res;
			}
			/* not inverts, all of one is the same. */
			if (kind == 1)
			{
				Text		u = {NULL, 0, 0};
				CdpRule    *nr;
				CdpRule    *ar;

				put(&u, "{\"not\": ");
				put(&u, t.s);
				put(&u, "}");
				nr = cdp_rule_compile(&arena, u.s, u.len, "e", NULL, 0);
				u.len = 0;
				put(&u, "{\"all\": [");
				put(&u, t.s);
				put(&u, "]}");
				ar = cdp_rule_compile(&arena, u.s, u.len, "e", NULL, 0);
				CHECK(nr != NULL && ar != NULL);
				if (nr != NULL && ar != NULL)
					for (k = 0; k < 4; k++)
					{
						int			res = cdp_rule_eval(r, facts_doc[k], NULL, 0);

						CHECK_EQ_INT(cdp_rule_eval(nr, facts_doc[k], why, sizeof(why)), !res);
						CHECK_EQ_INT(cdp_rule_eval(ar, facts_doc[k], why, sizeof(why)), res);
					}
			}
		}
		reset();
		if (unit_failures > 0)
		{
			fprintf(stderr, "  fuzz case %d failed\n", i);
			break;
		}
	}
	/* The run exercised both outcomes. */
	CHECK(compiled > 5000);
	CHECK(held > 100);
	CHECK(held < 4 * compiled - 100);
}

const unit_case unit_tests[] = {
	UNIT_CASE(json_scalars),
	UNIT_CASE(json_numbers_rejected),
	UNIT_CASE(json_strings),
	UNIT_CASE(json_structures),
	UNIT_CASE(json_duplicate_keys_in_large_objects),
	UNIT_CASE(json_nesting_limit),
	UNIT_CASE(json_error_buffer),
	UNIT_CASE(always_true_rules),
	UNIT_CASE(number_facts),
	UNIT_CASE(keyed_number_facts),
	UNIT_CASE(text_facts),
	UNIT_CASE(boolean_facts),
	UNIT_CASE(list_facts),
	UNIT_CASE(event_facts),
	UNIT_CASE(trait_facts),
	UNIT_CASE(missing_facts_fail_every_operator_but_exists_false),
	UNIT_CASE(combinations),
	UNIT_CASE(validation_errors),
	UNIT_CASE(reasons),
	UNIT_CASE(reasons_are_bounded),
	UNIT_CASE(limits),
	UNIT_CASE(fuzz_parser_and_compiler),
	UNIT_END
};
