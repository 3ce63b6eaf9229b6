/*
 * test_normalize.c
 *	  Unit tests of src/core/normalize.c.
 *
 * Every input is passed as a heap copy of exactly its length, with no NUL
 * after it, so that AddressSanitizer reports any read past len.
 */
#include "unit.h"
#include "normalize.h"

#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "normalize";

#define S(lit) lit, sizeof(lit) - 1
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef enum Which
{
	EMAIL,
	PHONE,
	TRIM
} Which;

/* One table row: the input, a default country, and the output or the reason. */
typedef struct Case
{
	const char *in;
	const char *country;		/* phone only */
	const char *want;			/* NULL: refused */
	const char *why;			/* reason when refused */
} Case;

/* Runs one normalizer on a heap copy of exactly len bytes. */
static int
run(Which which, const char *in, size_t len, const char *country, char *out, size_t outsz,
	const char **why)
{
	char	   *copy = malloc(len > 0 ? len : 1);
	int			r = -2;

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, in, len);
	switch (which)
	{
		case EMAIL:
			r = cdp_normalize_email(copy, len, out, outsz, why);
			break;
		case PHONE:
			r = cdp_normalize_phone(copy, len, country, out, outsz, why);
			break;
		case TRIM:
			r = cdp_normalize_trim(copy, len, out, outsz, why);
			break;
	}
	free(copy);
	return r;
}

/* Checks the rows of a table; reports each failing row with its input. */
static void
check_cases(Which which, const Case *cases, size_t n, const char *file, int line)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		const Case *c = &cases[i];
		char		out[CDP_MAX_NORMALIZED];
		const char *why = NULL;
		int			r;
		int			ok;

		memset(out, 'Z', sizeof(out));
		r = run(which, c->in, strlen(c->in), c->country, out, sizeof(out), &why);
		if (c->want != NULL)
			ok = r >= 0 && (size_t) r == strlen(c->want) && strcmp(out, c->want) == 0;
		else
			ok = r == -1 && why != NULL && strcmp(why, c->why) == 0 && out[0] == '\0';
		if (!ok)
		{
			fprintf(stderr, "  %s:%d: row %zu \"%s\" (%s): got %d \"%s\" why \"%s\"; expected \"%s\" why \"%s\"\n",
					file, line, i, c->in, c->country ? c->country : "no country", r,
					r >= 0 ? out : "", why ? why : "(null)",
					c->want ? c->want : "", c->why ? c->why : "");
			unit_failures++;
		}
	}
}

#define CHECK_CASES(which, cases) check_cases(which, cases, N_OF(cases), __FILE__, __LINE__)

/* ----------------------------------------------------------------------
 * E-mail
 * ----------------------------------------------------------------------
 */

UNIT_TEST(email_clean_and_messy)
{
	static const Case cases[] = {
		{"ann.smith@example.com", NULL, "ann.smith@example.com", NULL},
		{" Ann.Smith@Example.COM ", NULL, "ann.smith@example.com", NULL},
		{"ANN.SMITH@EXAMPLE.COM", NULL, "ann.smith@example.com", NULL},
		{"\tann@example.org\r\n", NULL, "ann@example.org", NULL},
		{"\xc2\xa0" "ann@example.org" "\xc2\xa0", NULL, "ann@example.org", NULL},
		{" \xc2\xa0 \xc2\xa0" "Bob@Example.Org", NULL, "bob@example.org", NULL},
		/* dots and +tags are the provider's business: kept */
		{"Ann.Smith+News@Gmail.com", NULL, "ann.smith+news@gmail.com", NULL},
		{"a.n.n@googlemail.com", NULL, "a.n.n@googlemail.com", NULL},
		{"o'brien@example.ie", NULL, "o'brien@example.ie", NULL},
		{"user_name-1@sub.domain.example.co.uk", NULL, "user_name-1@sub.domain.example.co.uk", NULL},
		{"x@ex.io", NULL, "x@ex.io", NULL},
		{"!#$%&'*+/=?^_`{|}~-@example.com", NULL, "!#$%&'*+/=?^_`{|}~-@example.com", NULL},
		{"ann@123.example.com", NULL, "ann@123.example.com", NULL},
		{"ann@a-b.example.com", NULL, "ann@a-b.example.com", NULL},
		{"ann@a--b.example.com", NULL, "ann@a--b.example.com", NULL},
		{"ann@EXAMPLE.museum", NULL, "ann@example.museum", NULL},
		{"ann@xn--bcher-kva.example", NULL, "ann@xn--bcher-kva.example", NULL},
		{"ann@example.xn--p1ai", NULL, "ann@example.xn--p1ai", NULL},
		{"ann@b.c0", NULL, "ann@b.c0", NULL},
		/* internationalized domains kept as written; only ASCII is lower-cased */
		{"ann@b\xc3\xbc" "cher.de", NULL, "ann@b\xc3\xbc" "cher.de", NULL},
		{"ANN@B\xc3\x9c" "CHER.DE", NULL, "ann@b\xc3\x9c" "cher.de", NULL},
		{"info@\xe4\xbe\x8b\xe3\x81\x88.jp", NULL, "info@\xe4\xbe\x8b\xe3\x81\x88.jp", NULL},
		{"ann@example.\xd1\x80\xd1\x84", NULL, "ann@example.\xd1\x80\xd1\x84", NULL},
		{"ann@\xf0\x9f\x98\x80.example", NULL, "ann@\xf0\x9f\x98\x80.example", NULL},
	};

	CHECK_CASES(EMAIL, cases);
}

UNIT_TEST(email_invalid)
{
	static const Case cases[] = {
		{"", NULL, NULL, "is empty"},
		{"   ", NULL, NULL, "is blank"},
		{"\xc2\xa0 \t\xc2\xa0", NULL, NULL, "is blank"},
		{"ann.example.com", NULL, NULL, "has no @"},
		{"ann", NULL, NULL, "has no @"},
		{"ann@@example.com", NULL, NULL, "has more than one @"},
		{"ann@smith@example.com", NULL, NULL, "has more than one @"},
		{"\"ann smith\"@example.com", NULL, NULL, "has a quoted local part"},
		{"\"a@b\"@example.com", NULL, NULL, "has a quoted local part"},
		{"@example.com", NULL, NULL, "has an empty local part"},
		{".ann@example.com", NULL, NULL, "has a dot at the start or end of the local part"},
		{"ann.@example.com", NULL, NULL, "has a dot at the start or end of the local part"},
		{"ann..smith@example.com", NULL, NULL, "has consecutive dots in the local part"},
		{"ann smith@example.com", NULL, NULL, "contains white space"},
		{"ann@exam ple.com", NULL, NULL, "contains white space"},
		{"Ann Smith <ann@example.com>", NULL, NULL, "contains white space"},
		{"ann@example.com\tx", NULL, NULL, "contains white space"},
		{"ann\x01@example.com", NULL, NULL, "contains a control character"},
		{"ann\x7f@example.com", NULL, NULL, "contains a control character"},
		{"<ann@example.com>", NULL, NULL, "has an invalid character in the local part"},
		{"mailto:ann@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"ann(work)@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"ann,bob@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"ann;bob@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"\xc3\xa5nn@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"ann\\@example.com", NULL, NULL, "has an invalid character in the local part"},
		{"ann@", NULL, NULL, "has an empty domain"},
		{"ann@[192.0.2.1]", NULL, NULL, "has an ip address as domain"},
		{"ann@[IPv6:2001:db8::1]", NULL, NULL, "has an ip address as domain"},
		{"ann@localhost", NULL, NULL, "has a domain without a dot"},
		{"ann@com", NULL, NULL, "has a domain without a dot"},
		{"ann@.example.com", NULL, NULL, "has an empty label in the domain"},
		{"ann@example.com.", NULL, NULL, "has an empty label in the domain"},
		{"ann@example..com", NULL, NULL, "has an empty label in the domain"},
		{"ann@.", NULL, NULL, "has an empty label in the domain"},
		{"ann@-example.com", NULL, NULL, "has a domain label starting or ending with -"},
		{"ann@example-.com", NULL, NULL, "has a domain label starting or ending with -"},
		{"ann@example.-com", NULL, NULL, "has a domain label starting or ending with -"},
		{"ann@exa_mple.com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@exa\"mple.com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@example.com>", NULL, NULL, "has an invalid character in the domain"},
		{"ann@example,com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@example.c", NULL, NULL, "has an invalid top-level domain"},
		{"ann@192.168.0.1", NULL, NULL, "has an invalid top-level domain"},
		{"ann@example.123", NULL, NULL, "has an invalid top-level domain"},
		/* no-break space, zero-width space, ideographic full stop inside a domain */
		{"ann@exa\xc2\xa0mple.com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@ex\xe2\x80\x8b" "ample.com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@example\xe3\x80\x82" "com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@example\xef\xbc\x8e" "com", NULL, NULL, "has an invalid character in the domain"},
		{"ann@exa\xc2\x85mple.com", NULL, NULL, "has an invalid character in the domain"},
		/* Latin-1, truncated, overlong, surrogate, out of range, stray continuation */
		{"ann@b\xfc" "cher.de", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@b\xc3.de", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@example.d\xc3", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\xc0\xae.com", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\xe0\x80\xae.com", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\xed\xa0\x80.com", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\xf4\x90\x80\x80.com", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\x80.com", NULL, NULL, "has invalid utf-8 in the domain"},
		{"ann@\xe4\xbe.com", NULL, NULL, "has invalid utf-8 in the domain"},
	};

	CHECK_CASES(EMAIL, cases);
}

UNIT_TEST(email_length_limits)
{
	char		buf[400];
	char		out[CDP_MAX_NORMALIZED];
	const char *why = NULL;
	size_t		n;

	/* local part: 64 bytes fine, 65 refused */
	memset(buf, 'a', 64);
	memcpy(buf + 64, "@example.com", 12);
	CHECK_EQ_INT(run(EMAIL, buf, 76, NULL, out, sizeof(out), &why), 76);
	memset(buf, 'a', 65);
	memcpy(buf + 65, "@example.com", 12);
	CHECK_EQ_INT(run(EMAIL, buf, 77, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has a local part longer than 64 bytes");

	/* label: 63 bytes fine, 64 refused */
	memcpy(buf, "ann@", 4);
	memset(buf + 4, 'b', 63);
	memcpy(buf + 67, ".com", 4);
	CHECK_EQ_INT(run(EMAIL, buf, 71, NULL, out, sizeof(out), &why), 71);
	memset(buf + 4, 'b', 64);
	memcpy(buf + 68, ".com", 4);
	CHECK_EQ_INT(run(EMAIL, buf, 72, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has a domain label longer than 63 bytes");
	/* the top-level domain too */
	memcpy(buf, "ann@example.", 12);
	memset(buf + 12, 'c', 64);
	CHECK_EQ_INT(run(EMAIL, buf, 76, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has a domain label longer than 63 bytes");

	/* whole address: 254 bytes fine, 255 refused (64 + @ + 189 or 190) */
	memset(buf, 'a', 64);
	buf[64] = '@';
	n = 65;
	while (n < 254 - 4)
	{
		size_t		k = 254 - 4 - n < 40 ? 254 - 4 - n : 40;

		memset(buf + n, 'd', k);
		n += k;
		if (n < 254 - 4)
			buf[n++] = '.';
	}
	memcpy(buf + n, ".com", 4);
	n += 4;
	CHECK_EQ_INT(n, 254);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), 254);
	CHECK_EQ_INT(strlen(out), 254);
	CHECK(memcmp(out, buf, 254) == 0);
	/* one more byte in the first label */
	memmove(buf + 66, buf + 65, n - 65);
	buf[65] = 'd';
	CHECK_EQ_INT(run(EMAIL, buf, n + 1, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too long");
	/* the limit applies after trimming */
	memmove(buf + 65, buf + 66, n - 65);
	memmove(buf + 2, buf, n);
	buf[0] = ' ';
	buf[1] = '\t';
	buf[n + 2] = ' ';
	CHECK_EQ_INT(run(EMAIL, buf, n + 3, NULL, out, sizeof(out), &why), 254);
	CHECK(memcmp(out, buf + 2, 254) == 0);
}

/* ----------------------------------------------------------------------
 * Phone
 * ----------------------------------------------------------------------
 */

UNIT_TEST(phone_gb)
{
	static const Case cases[] = {
		/* the forms of one mobile number */
		{"07700 900123", "GB", "+447700900123", NULL},
		{"+44 7700 900123", "GB", "+447700900123", NULL},
		{"0044 7700-900-123", "GB", "+447700900123", NULL},
		{"(07700) 900123", "GB", "+447700900123", NULL},
		{"+44 (0)7700 900123", "GB", "+447700900123", NULL},
		{"+44(0)7700900123", "GB", "+447700900123", NULL},
		{"+44 (0) 7700 900 123", "GB", "+447700900123", NULL},
		{"+44 07700 900123", "GB", "+447700900123", NULL},
		{"7700 900123", "GB", "+447700900123", NULL},
		{"07700900123", "GB", "+447700900123", NULL},
		{"07700.900.123", "GB", "+447700900123", NULL},
		{"07700/900123", "GB", "+447700900123", NULL},
		{" 07700 900123\t", "GB", "+447700900123", NULL},
		{"07700\xc2\xa0" "900\xc2\xa0" "123", "GB", "+447700900123", NULL},
		{"07700\xe2\x80\xaf" "900123", "GB", "+447700900123", NULL},
		{"07700\xe2\x80\x93" "900\xe2\x80\x91" "123", "GB", "+447700900123", NULL},
		{"\xe2\x80\x8e+44 7700 900123\xe2\x80\x8f", "GB", "+447700900123", NULL},
		{"(+44) 7700 900123", "GB", "+447700900123", NULL},
		{"07700 900123", "gb", "+447700900123", NULL},
		{"07700 900123", "UK", "+447700900123", NULL},
		{"07700 900123", "uk", "+447700900123", NULL},
		/* landlines: London, a five-digit area code, a mixed area with 9 digits */
		{"020 7946 0000", "GB", "+442079460000", NULL},
		{"(020) 7946 0000", "GB", "+442079460000", NULL},
		{"+44 20 7946 0000", "GB", "+442079460000", NULL},
		{"+44 (0)20 7946 0000", "GB", "+442079460000", NULL},
		{"(0)20 7946 0000", "GB", "+442079460000", NULL},
		{"01632 960123", "GB", "+441632960123", NULL},
		{"0161 496 0000", "GB", "+441614960000", NULL},
		{"016977 3456", "GB", "+44169773456", NULL},
		{"0800 1111", "GB", "+448001111", NULL},
		{"0800 123 456", "GB", "+44800123456", NULL},
		{"0800 123 4567", "GB", "+448001234567", NULL},
		/* lengths */
		{"07700 90012", "GB", NULL, "is too short for GB"},
		{"07700 9001234", "GB", NULL, "is too long for GB"},
		{"020 7946 000", "GB", NULL, "is too short for GB"},
		{"01632 9601", "GB", NULL, "is too short for GB"},
		{"0123 45", "GB", NULL, "is too short for GB"},
		{"0800 11111", "GB", NULL, "has an invalid length for GB"},
		{"+44 7700 90012", "GB", NULL, "is too short for GB"},
		{"+44", "GB", NULL, "is too short for GB"},
		{"+44 00 7700 90012", "GB", NULL, "has an invalid national number"},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_fr_de_it)
{
	static const Case cases[] = {
		{"06 12 34 56 78", "FR", "+33612345678", NULL},
		{"06.12.34.56.78", "FR", "+33612345678", NULL},
		{"0612345678", "FR", "+33612345678", NULL},
		{"+33 6 12 34 56 78", "FR", "+33612345678", NULL},
		{"0033 6 12 34 56 78", "FR", "+33612345678", NULL},
		{"+33 (0)6 12 34 56 78", "FR", "+33612345678", NULL},
		{"06\xe2\x80\xaf" "12\xe2\x80\xaf" "34\xe2\x80\xaf" "56\xe2\x80\xaf" "78", "FR", "+33612345678", NULL},
		{"01 23 45 67 89", "FR", "+33123456789", NULL},
		{"06 12 34 56 7", "FR", NULL, "is too short for FR"},
		{"06 12 34 56 789", "FR", NULL, "is too long for FR"},
		/* Germany: numbers of many lengths */
		{"030 123456", "DE", "+4930123456", NULL},
		{"030 12345678", "DE", "+493012345678", NULL},
		{"089 1234567", "DE", "+49891234567", NULL},
		{"03375 12345", "DE", "+49337512345", NULL},
		{"0151 23456789", "DE", "+4915123456789", NULL},
		{"0171 1234567", "DE", "+491711234567", NULL},
		{"0171 12345678", "DE", "+4917112345678", NULL},
		{"+49 (0)30 1234 5678", "DE", "+493012345678", NULL},
		{"0049 30 1234 5678", "DE", "+493012345678", NULL},
		{"+49 030 1234 5678", "DE", "+493012345678", NULL},
		{"030/1234-5678", "DE", "+493012345678", NULL},
		{"030 12", "DE", NULL, "is too short for DE"},
		{"0151 2345678", "DE", NULL, "is too short for DE"},
		{"0171 123456789", "DE", NULL, "is too long for DE"},
		{"030 12345678901234", "DE", NULL, "is too long for DE"},
		/* Italy keeps its 0 */
		{"06 1234 5678", "IT", "+390612345678", NULL},
		{"+39 06 1234 5678", "IT", "+390612345678", NULL},
		{"0039 06 1234 5678", "IT", "+390612345678", NULL},
		{"02 1234 5678", "IT", "+390212345678", NULL},
		{"0471 123456", "IT", "+390471123456", NULL},
		{"333 123 4567", "IT", "+393331234567", NULL},
		{"+39 333 1234567", "IT", "+393331234567", NULL},
		{"06 6988 1234", "VA", "+390669881234", NULL},
		{"+39 (0)6 1234 5678", "IT", NULL, "has a misplaced (0)"},
		{"(0)6 1234 5678", "IT", NULL, "has a misplaced (0)"},
		{"333 12", "IT", NULL, "is too short for IT"},
		{"06 123", "IT", NULL, "is too short for IT"},
		{"06 1234 5678 9012", "IT", NULL, "is too long for IT"},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_us)
{
	static const Case cases[] = {
		{"415-555-0123", "US", "+14155550123", NULL},
		{"(415) 555 0123", "US", "+14155550123", NULL},
		{"(415) 555-0123", "US", "+14155550123", NULL},
		{"415.555.0123", "US", "+14155550123", NULL},
		{"4155550123", "US", "+14155550123", NULL},
		{"1-415-555-0123", "US", "+14155550123", NULL},
		{"1 (415) 555-0123", "US", "+14155550123", NULL},
		{"14155550123", "US", "+14155550123", NULL},
		{"+1 415 555 0123", "US", "+14155550123", NULL},
		{"+1-415-555-0123", "US", "+14155550123", NULL},
		{"+1 (415) 555-0123", "us", "+14155550123", NULL},
		{"(604) 555-0199", "CA", "+16045550199", NULL},
		{"876 555 0123", "JM", "+18765550123", NULL},
		/* calling abroad from the NANP */
		{"011 44 20 7946 0000", "US", "+442079460000", NULL},
		{"011 33 6 12 34 56 78", "US", "+33612345678", NULL},
		{"011-39-06-1234-5678", "CA", "+390612345678", NULL},
		/* the NANP shape */
		{"555-0123", "US", NULL, "is too short for US/CA"},
		{"415-555-01234", "US", NULL, "is too long for US/CA"},
		{"115-555-0123", "US", NULL, "is too short for US/CA"},
		{"015-555-0123", "US", NULL, "has an invalid area code"},
		{"1 015 555 0123", "US", NULL, "has an invalid area code"},
		{"+1 115 555 0123", "US", NULL, "has an invalid area code"},
		{"415-155-0123", "US", NULL, "has an invalid exchange code"},
		{"+1 415 055 0123", "GB", NULL, "has an invalid exchange code"},
		{"+1 (0) 415 555 0123", "US", NULL, "has a misplaced (0)"},
		/* 00 is not the NANP's international prefix: a 14-digit national number */
		{"0044 20 7946 0000", "US", NULL, "is too long for US/CA"},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_ie_nl_es)
{
	static const Case cases[] = {
		{"087 123 4567", "IE", "+353871234567", NULL},
		{"+353 87 123 4567", "IE", "+353871234567", NULL},
		{"00353 87 123 4567", "IE", "+353871234567", NULL},
		{"01 234 5678", "IE", "+35312345678", NULL},
		{"+353 (0)1 234 5678", "IE", "+35312345678", NULL},
		{"021 123 4567", "IE", "+353211234567", NULL},
		{"087 123 456", "IE", NULL, "is too short for IE"},
		{"06 12345678", "NL", "+31612345678", NULL},
		{"06-12 34 56 78", "NL", "+31612345678", NULL},
		{"+31 6 12345678", "NL", "+31612345678", NULL},
		{"+31 (0)6 1234 5678", "NL", "+31612345678", NULL},
		{"020 123 4567", "NL", "+31201234567", NULL},
		{"0800 1234", "NL", "+318001234", NULL},
		{"06 1234567", "NL", NULL, "is too short for NL"},
		{"06 123456789", "NL", NULL, "is too long for NL"},
		{"612 34 56 78", "ES", "+34612345678", NULL},
		{"+34 612 34 56 78", "ES", "+34612345678", NULL},
		{"0034 612345678", "ES", "+34612345678", NULL},
		{"91 123 45 67", "ES", "+34911234567", NULL},
		{"612 34 56 7", "ES", NULL, "is too short for ES"},
		{"+34 (0)612 34 56 78", "ES", NULL, "has a misplaced (0)"},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_other_countries)
{
	static const Case cases[] = {
		{"8 (912) 345-67-89", "RU", "+79123456789", NULL},
		{"+7 912 345 67 89", "RU", "+79123456789", NULL},
		{"8 800 123 45 67", "RU", "+78001234567", NULL},
		/* a Russian national number may start with 8 without a trunk prefix */
		{"800 123 45 67", "RU", "+78001234567", NULL},
		{"8 10 44 20 7946 0000", "RU", "+442079460000", NULL},
		{"7 912 345 67 89", "RU", NULL, "is too long for RU/KZ"},
		{"8 701 123 4567", "KZ", "+77011234567", NULL},
		{"06 1 234 5678", "HU", "+3612345678", NULL},
		{"06 30 123 4567", "HU", "+36301234567", NULL},
		{"+36 30 123 4567", "HU", "+36301234567", NULL},
		{"06 30 123 456", "HU", NULL, "is too short for HU"},
		{"+36 (0)30 123 4567", "HU", NULL, "has a misplaced (0)"},
		{"0412 345 678", "AU", "+61412345678", NULL},
		{"(02) 9876 5432", "AU", "+61298765432", NULL},
		{"1800 123 456", "AU", "+611800123456", NULL},
		{"0011 44 20 7946 0000", "AU", "+442079460000", NULL},
		{"021 123 4567", "NZ", "+64211234567", NULL},
		{"09 123 4567", "NZ", "+6491234567", NULL},
		{"090-1234-5678", "JP", "+819012345678", NULL},
		{"03-1234-5678", "JP", "+81312345678", NULL},
		{"010 44 20 7946 0000", "JP", "+442079460000", NULL},
		{"090-1234-567", "JP", NULL, "is too short for JP"},
		{"138 0013 8000", "CN", "+8613800138000", NULL},
		{"010 1234 5678", "CN", "+861012345678", NULL},
		{"138 0013 800", "CN", NULL, "is too short for CN"},
		{"098765 43210", "IN", "+919876543210", NULL},
		{"+91 98765 43210", "IN", "+919876543210", NULL},
		{"(11) 98765-4321", "BR", "+5511987654321", NULL},
		{"(011) 98765-4321", "BR", "+5511987654321", NULL},
		{"(21) 2345-6789", "BR", "+552123456789", NULL},
		{"55 1234 5678", "MX", "+525512345678", NULL},
		{"01 55 1234 5678", "MX", NULL, "is too long for MX"},
		{"+52 1 55 1234 5678", "MX", NULL, "is too long for MX"},
		{"082 123 4567", "ZA", "+27821234567", NULL},
		{"079 123 45 67", "CH", "+41791234567", NULL},
		{"+41 (0)44 123 45 67", "CH", "+41441234567", NULL},
		{"0664 1234567", "AT", "+436641234567", NULL},
		{"01 234567", "AT", "+431234567", NULL},
		{"0470 12 34 56", "BE", "+32470123456", NULL},
		{"02 123 45 67", "BE", "+3221234567", NULL},
		{"0470 12 34 5", "BE", NULL, "is too short for BE"},
		{"621 123 456", "LU", "+352621123456", NULL},
		{"26 12 34", "LU", "+352261234", NULL},
		{"912 345 678", "PT", "+351912345678", NULL},
		{"12 34 56 78", "DK", "+4512345678", NULL},
		{"123 45 67", "DK", NULL, "is too short for DK"},
		{"070-123 45 67", "SE", "+46701234567", NULL},
		{"08-123 456 78", "SE", "+46812345678", NULL},
		{"412 34 567", "NO", "+4741234567", NULL},
		{"040 123 4567", "FI", "+358401234567", NULL},
		{"018 12345", "AX", "+3581812345", NULL},
		{"512 345 678", "PL", "+48512345678", NULL},
		{"601 123 456", "CZ", "+420601123456", NULL},
		{"0905 123 456", "SK", "+421905123456", NULL},
		{"21 0123 4567", "GR", "+302101234567", NULL},
		{"0712 345 678", "RO", "+40712345678", NULL},
		{"0532 123 45 67", "TR", "+905321234567", NULL},
		{"050-123-4567", "IL", "+972501234567", NULL},
		{"03-123-4567", "IL", "+97231234567", NULL},
		{"9123 4567", "SG", "+6591234567", NULL},
		{"07781 123456", "GG", "+447781123456", NULL},
		{"07797 123456", "JE", "+447797123456", NULL},
		{"07624 123456", "IM", "+447624123456", NULL},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_international_with_other_default)
{
	static const Case cases[] = {
		{"+33 6 12 34 56 78", "GB", "+33612345678", NULL},
		{"+44 7700 900123", "FR", "+447700900123", NULL},
		{"0044 7700 900123", "FR", "+447700900123", NULL},
		{"0044 (0)7700 900123", "FR", "+447700900123", NULL},
		{"0033 6 12 34 56 78", "DE", "+33612345678", NULL},
		{"+44 20 7946 0000", "US", "+442079460000", NULL},
		{"+1 (415) 555-0123", "GB", "+14155550123", NULL},
		{"001 415 555 0123", "GB", "+14155550123", NULL},
		{"+39 06 1234 5678", "ES", "+390612345678", NULL},
		{"+39 06 1234 5678", "GB", "+390612345678", NULL},
		{"+7 912 345 67 89", "DE", "+79123456789", NULL},
		{"+49 151 23456789", "NL", "+4915123456789", NULL},
		{"+353 87 123 4567", "GB", "+353871234567", NULL},
		/* calling codes without a plan: E.164 lengths */
		{"+20 10 1234 5678", "GB", "+201012345678", NULL},
		{"+971 50 123 4567", "GB", "+971501234567", NULL},
		{"+852 1234 5678", "US", "+85212345678", NULL},
		{"+800 1234 5678", "US", "+80012345678", NULL},
		{"+20 (0)10 1234 5678", "GB", "+201012345678", NULL},
		{"+683 1234", "GB", "+6831234", NULL},
		{"+290 12345", "GB", "+29012345", NULL},
		{"+690 1234", "GB", "+6901234", NULL},
		{"+683 12345", "GB", NULL, "is too long for NU"},
		{"+290 123", "GB", NULL, "is too short for SH"},
		{"+20 1234", "GB", NULL, "has too few digits"},
		{"+20 1234 5678 9012 345", "GB", NULL, "has too many digits"},
		{"+28 1234 5678", "GB", NULL, "has an unknown country calling code"},
		{"+0 44 7700 900123", "GB", NULL, "has an unknown country calling code"},
		{"+0044 7700 900123", "GB", NULL, "has an unknown country calling code"},
		{"+210 1234 5678", "GB", NULL, "has an unknown country calling code"},
		{"00", "GB", NULL, "has too few digits"},
		/* no default country: only international forms */
		{"+44 7700 900123", NULL, "+447700900123", NULL},
		{"0044 7700 900123", NULL, "+447700900123", NULL},
		{"+44 7700 900123", "", "+447700900123", NULL},
		{"07700 900123", NULL, NULL, "has no country code and no default country"},
		{"07700 900123", "", NULL, "has no country code and no default country"},
		{"+44 7700 900123", "XX", "+447700900123", NULL},
		{"0044 7700 900123", "XX", "+447700900123", NULL},
		{"07700 900123", "XX", NULL, "has no country code and an unknown default country"},
		{"07700 900123", "GBR", NULL, "has no country code and an unknown default country"},
		{"07700 900123", "G", NULL, "has no country code and an unknown default country"},
	};

	CHECK_CASES(PHONE, cases);
}

UNIT_TEST(phone_refusals)
{
	static const Case cases[] = {
		{"", "GB", NULL, "is empty"},
		{"   \t ", "GB", NULL, "is blank"},
		{"\xc2\xa0\xc2\xa0", "GB", NULL, "is blank"},
		{"+", "GB", NULL, "has no digits"},
		{"( ) - .", "GB", NULL, "has no digits"},
		{"+()", "GB", NULL, "has no digits"},
		{"0770O 900123", "GB", NULL, "has letters"},
		{"1-800-FLOWERS", "US", NULL, "has letters"},
		{"tel:+44 7700 900123", "GB", NULL, "has letters"},
		{"Tel. 07700 900123", "GB", NULL, "has letters"},
		{"unknown", "GB", NULL, "has letters"},
		{"n/a", "GB", NULL, "has letters"},
		{"x123", "US", NULL, "has letters"},
		{"415-555-0123 x", "US", NULL, "has letters"},
		{"415-555-0123 ext 12 office", "US", NULL, "has letters"},
		{"415-555-0123 x12", "US", NULL, "has an extension"},
		{"415-555-0123 x 12", "US", NULL, "has an extension"},
		{"415-555-0123 ext 12", "US", NULL, "has an extension"},
		{"415-555-0123 ext.12", "US", NULL, "has an extension"},
		{"415-555-0123 ext. 12", "US", NULL, "has an extension"},
		{"415-555-0123 Ext: 12", "US", NULL, "has an extension"},
		{"415-555-0123 EXT 12", "US", NULL, "has an extension"},
		{"415-555-0123 extn 12", "US", NULL, "has an extension"},
		{"415-555-0123 extension 12", "US", NULL, "has an extension"},
		{"415-555-0123 #12", "US", NULL, "has an extension"},
		{"415-555-0123#12", "US", NULL, "has an extension"},
		{"415-555-0123;ext=12", "US", NULL, "has an extension"},
		{"415-555-0123, x 12", "US", NULL, "has an extension"},
		{"020 7946 0000 x 4", "GB", NULL, "has an extension"},
		{"07700*900123", "GB", NULL, "has an invalid character"},
		{"07700_900123", "GB", NULL, "has an invalid character"},
		{"07700 900123#", "GB", NULL, "has an invalid character"},
		{"07700 900123;", "GB", NULL, "has an invalid character"},
		{"07700, 900123", "GB", NULL, "has an invalid character"},
		{"07700 900123 \xe2\x98\x8e", "GB", NULL, "has an invalid character"},
		{"\xef\xbc\x90\xef\xbc\x97\xef\xbc\x97\xef\xbc\x90\xef\xbc\x90", "GB", NULL,
		"has an invalid character"},
		{"\xd9\xa0\xd9\xa7", "GB", NULL, "has an invalid character"},
		{"07700\xff" "900123", "GB", NULL, "has an invalid character"},
		{"07700\xc2" "900123", "GB", NULL, "has an invalid character"},
		{"07700\n900123", "GB", NULL, "contains a control character"},
		{"07700\x1b" "900123", "GB", NULL, "contains a control character"},
		{"07700\x7f" "900123", "GB", NULL, "contains a control character"},
		{"++44 7700 900123", "GB", NULL, "has a misplaced +"},
		{"44+7700900123", "GB", NULL, "has a misplaced +"},
		{"07700 900123+", "GB", NULL, "has a misplaced +"},
		{"(0)+44 7700 900123", "GB", NULL, "has a misplaced +"},
		{"+(0)44 7700 900123", "GB", NULL, "has a misplaced (0)"},
		{"+44 7700 (0)900123", "GB", NULL, "has a misplaced (0)"},
		{"020 (0)7946 0000", "GB", NULL, "has a misplaced (0)"},
		{"(0)(0)20 7946 0000", "GB", NULL, "has a misplaced (0)"},
		{"0044 20 (0)7946 0000", "GB", NULL, "has a misplaced (0)"},
		{"1234567890123456789012345", "GB", NULL, "has too many digits"},
	};
	const char *why = NULL;
	char		out[CDP_MAX_NORMALIZED];

	CHECK_CASES(PHONE, cases);
	/* a NUL byte inside the value */
	CHECK_EQ_INT(run(PHONE, S("07700\0" "900123"), "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "contains a control character");
}

UNIT_TEST(phone_every_default_country)
{
	/* every supported default country reads a national number */
	static const char *const nanp[] = {
		"AG", "AI", "AS", "BB", "BM", "BS", "CA", "DM", "DO", "GD", "GU", "JM", "KN",
		"KY", "LC", "MP", "MS", "PR", "SX", "TC", "TT", "US", "VC", "VG", "VI"
	};
	static const Case others[] = {
		{"0664 1234567", "AT", "+436641234567", NULL},
		{"0412 345 678", "AU", "+61412345678", NULL},
		{"018 12345", "AX", "+3581812345", NULL},
		{"0470 12 34 56", "BE", "+32470123456", NULL},
		{"(11) 98765-4321", "BR", "+5511987654321", NULL},
		{"079 123 45 67", "CH", "+41791234567", NULL},
		{"138 0013 8000", "CN", "+8613800138000", NULL},
		{"601 123 456", "CZ", "+420601123456", NULL},
		{"030 12345678", "DE", "+493012345678", NULL},
		{"12 34 56 78", "DK", "+4512345678", NULL},
		{"612 34 56 78", "ES", "+34612345678", NULL},
		{"040 123 4567", "FI", "+358401234567", NULL},
		{"06 12 34 56 78", "FR", "+33612345678", NULL},
		{"07700 900123", "GB", "+447700900123", NULL},
		{"07781 123456", "GG", "+447781123456", NULL},
		{"21 0123 4567", "GR", "+302101234567", NULL},
		{"06 30 123 4567", "HU", "+36301234567", NULL},
		{"087 123 4567", "IE", "+353871234567", NULL},
		{"050-123-4567", "IL", "+972501234567", NULL},
		{"07624 123456", "IM", "+447624123456", NULL},
		{"098765 43210", "IN", "+919876543210", NULL},
		{"06 1234 5678", "IT", "+390612345678", NULL},
		{"07797 123456", "JE", "+447797123456", NULL},
		{"090-1234-5678", "JP", "+819012345678", NULL},
		{"8 701 123 4567", "KZ", "+77011234567", NULL},
		{"621 123 456", "LU", "+352621123456", NULL},
		{"55 1234 5678", "MX", "+525512345678", NULL},
		{"06 12345678", "NL", "+31612345678", NULL},
		{"412 34 567", "NO", "+4741234567", NULL},
		{"021 123 4567", "NZ", "+64211234567", NULL},
		{"512 345 678", "PL", "+48512345678", NULL},
		{"912 345 678", "PT", "+351912345678", NULL},
		{"0712 345 678", "RO", "+40712345678", NULL},
		{"8 912 345 67 89", "RU", "+79123456789", NULL},
		{"070-123 45 67", "SE", "+46701234567", NULL},
		{"9123 4567", "SG", "+6591234567", NULL},
		{"0905 123 456", "SK", "+421905123456", NULL},
		{"0532 123 45 67", "TR", "+905321234567", NULL},
		{"07700 900123", "UK", "+447700900123", NULL},
		{"06 6988 1234", "VA", "+390669881234", NULL},
		{"082 123 4567", "ZA", "+27821234567", NULL},
	};
	size_t		i;

	CHECK_CASES(PHONE, others);
	for (i = 0; i < N_OF(nanp); i++)
	{
		char		out[CDP_MAX_NORMALIZED];
		const char *why = NULL;

		CHECK_EQ_INT(cdp_phone_country_known(nanp[i]), 1);
		CHECK_EQ_INT(run(PHONE, S("1 (212) 555-0123"), nanp[i], out, sizeof(out), &why), 12);
		CHECK_EQ_STR(out, "+12125550123");
		CHECK_EQ_INT(run(PHONE, S("011 44 20 7946 0000"), nanp[i], out, sizeof(out), &why), 13);
		CHECK_EQ_STR(out, "+442079460000");
	}
	for (i = 0; i < N_OF(others); i++)
		CHECK_EQ_INT(cdp_phone_country_known(others[i].country), 1);

	/* and no other two-letter code is known */
	{
		char		iso[3] = {0, 0, 0};
		size_t		nknown = 0;

		for (iso[0] = 'A'; iso[0] <= 'Z'; iso[0]++)
		{
			for (iso[1] = 'A'; iso[1] <= 'Z'; iso[1]++)
			{
				int			listed = 0;

				if (!cdp_phone_country_known(iso))
					continue;
				nknown++;
				for (i = 0; i < N_OF(nanp); i++)
					listed |= strcmp(nanp[i], iso) == 0;
				for (i = 0; i < N_OF(others); i++)
					listed |= strcmp(others[i].country, iso) == 0;
				if (!listed)
				{
					fprintf(stderr, "  %s is known but not tested\n", iso);
					unit_failures++;
				}
			}
		}
		CHECK_EQ_INT(nknown, N_OF(nanp) + N_OF(others));
	}
}

UNIT_TEST(phone_country_known)
{
	CHECK_EQ_INT(cdp_phone_country_known("GB"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("gb"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("Gb"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("US"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("it"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("UK"), 1);
	CHECK_EQ_INT(cdp_phone_country_known("XX"), 0);
	CHECK_EQ_INT(cdp_phone_country_known("EG"), 0);
	CHECK_EQ_INT(cdp_phone_country_known("GBR"), 0);
	CHECK_EQ_INT(cdp_phone_country_known("G"), 0);
	CHECK_EQ_INT(cdp_phone_country_known(""), 0);
	CHECK_EQ_INT(cdp_phone_country_known(NULL), 0);
	CHECK_EQ_INT(cdp_phone_country_known("G1"), 0);
	CHECK_EQ_INT(cdp_phone_country_known("US "), 0);
	CHECK_EQ_INT(cdp_phone_country_known("\xc3\xa9s"), 0);
}

/* The ITU-T E.164 assigned calling codes, as the spec of the table. */
static const int assigned_codes[] = {
	1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49,
	51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86,
	90, 91, 92, 93, 94, 95, 98,
	211, 212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229,
	230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244,
	245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256, 257, 258,
	260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298, 299,
	350, 351, 352, 353, 354, 355, 356, 357, 358, 359,
	370, 371, 372, 373, 374, 375, 376, 377, 378, 380, 381, 382, 383, 385, 386, 387, 389,
	420, 421, 423, 500, 501, 502, 503, 504, 505, 506, 507, 508, 509,
	590, 591, 592, 593, 594, 595, 596, 597, 598, 599,
	670, 672, 673, 674, 675, 676, 677, 678, 679, 680, 681, 682, 683,
	685, 686, 687, 688, 689, 690, 691, 692,
	800, 808, 850, 852, 853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888,
	960, 961, 962, 963, 964, 965, 966, 967, 968, 970, 971, 972, 973, 974, 975, 976, 977, 979,
	992, 993, 994, 995, 996, 998,
};

/* Is code in assigned_codes? */
static int
is_assigned(int code)
{
	size_t		i;

	for (i = 0; i < N_OF(assigned_codes); i++)
	{
		if (assigned_codes[i] == code)
			return 1;
	}
	return 0;
}

UNIT_TEST(phone_calling_codes)
{
	size_t		i;
	int			c;

	/* prefix-free, so that reading the shortest match is right */
	for (i = 0; i < N_OF(assigned_codes); i++)
	{
		int			a = assigned_codes[i];

		CHECK(!(a >= 10 && is_assigned(a / 10)));
		CHECK(!(a >= 100 && is_assigned(a / 100)));
	}
	/* every three-digit start reads as the code it begins with, or none */
	for (c = 100; c <= 999; c++)
	{
		char		in[32];
		char		out[CDP_MAX_NORMALIZED];
		const char *why = NULL;
		int			known = is_assigned(c / 100) || is_assigned(c / 10) || is_assigned(c);
		int			r;

		snprintf(in, sizeof(in), "+%d 123456789", c);
		r = run(PHONE, in, strlen(in), NULL, out, sizeof(out), &why);
		if (known)
		{
			if (r < 0 && strcmp(why, "has an unknown country calling code") == 0)
			{
				fprintf(stderr, "  %s: refused as unknown\n", in);
				unit_failures++;
			}
		}
		else if (r != -1 || strcmp(why, "has an unknown country calling code") != 0)
		{
			fprintf(stderr, "  %s: not refused as unknown (%d, %s)\n", in, r, r < 0 ? why : out);
			unit_failures++;
		}
	}
	CHECK_EQ_INT(N_OF(assigned_codes), 215);
}

UNIT_TEST(phone_nanp_every_area_code_digit)
{
	int			d;

	for (d = 0; d <= 9; d++)
	{
		char		in[32];
		char		out[CDP_MAX_NORMALIZED];
		const char *why = NULL;
		int			r;

		snprintf(in, sizeof(in), "+1 %d15 555 0123", d);
		r = run(PHONE, in, strlen(in), "US", out, sizeof(out), &why);
		if (d >= 2)
			CHECK_EQ_INT(r, 12);
		else
		{
			CHECK_EQ_INT(r, -1);
			CHECK_EQ_STR(why, "has an invalid area code");
		}
		snprintf(in, sizeof(in), "+1 415 %d55 0123", d);
		r = run(PHONE, in, strlen(in), "US", out, sizeof(out), &why);
		if (d >= 2)
			CHECK_EQ_INT(r, 12);
		else
		{
			CHECK_EQ_INT(r, -1);
			CHECK_EQ_STR(why, "has an invalid exchange code");
		}
	}
}

/* ----------------------------------------------------------------------
 * Generic identifiers
 * ----------------------------------------------------------------------
 */

UNIT_TEST(trim_cases)
{
	static const Case cases[] = {
		{"abc-123", NULL, "abc-123", NULL},
		{"  abc-123 ", NULL, "abc-123", NULL},
		{"\t\r\nCRM-0042\n", NULL, "CRM-0042", NULL},
		{"\xc2\xa0ID42\xc2\xa0", NULL, "ID42", NULL},
		{"Mixed Case Id", NULL, "Mixed Case Id", NULL},
		{"caf\xc3\xa9 \xe2\x98\x95", NULL, "caf\xc3\xa9 \xe2\x98\x95", NULL},
		{"a", NULL, "a", NULL},
		{"", NULL, NULL, "is empty"},
		{"   ", NULL, NULL, "is blank"},
		{"\xc2\xa0 \xc2\xa0", NULL, NULL, "is blank"},
		{"a\tb", NULL, NULL, "contains a control character"},
		{"a\nb", NULL, NULL, "contains a control character"},
		{"a\x7f", NULL, NULL, "contains a control character"},
		{"\x1b[31mred", NULL, NULL, "contains a control character"},
		{"a\xc2\x85" "b", NULL, NULL, "contains a control character"},
		{"a\xc2\x9f", NULL, NULL, "contains a control character"},
	};
	char		out[CDP_MAX_NORMALIZED];
	const char *why = NULL;

	CHECK_CASES(TRIM, cases);
	CHECK_EQ_INT(run(TRIM, S("a\0b"), NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "contains a control character");
}

/* ----------------------------------------------------------------------
 * Buffers, counted strings, long and random inputs
 * ----------------------------------------------------------------------
 */

UNIT_TEST(buffer_too_small)
{
	char		out[CDP_MAX_NORMALIZED];
	const char *why = NULL;

	/* e-mail: 15 bytes need 16 */
	CHECK_EQ_INT(run(EMAIL, S(" Ann@Example.com"), NULL, out, 16, &why), 15);
	CHECK_EQ_STR(out, "ann@example.com");
	out[0] = 'Z';
	CHECK_EQ_INT(run(EMAIL, S(" Ann@Example.com"), NULL, out, 15, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	CHECK_EQ_INT(out[0], '\0');
	CHECK_EQ_INT(run(EMAIL, S("ann@example.com"), NULL, out, 1, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	CHECK_EQ_INT(run(EMAIL, S("ann@example.com"), NULL, NULL, 0, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	/* a syntax error is reported as such, whatever the buffer */
	CHECK_EQ_INT(run(EMAIL, S("ann"), NULL, out, 2, &why), -1);
	CHECK_EQ_STR(why, "has no @");

	/* phone: "+447700900123" is 13 bytes */
	CHECK_EQ_INT(run(PHONE, S("07700 900123"), "GB", out, 14, &why), 13);
	CHECK_EQ_STR(out, "+447700900123");
	CHECK_EQ_INT(run(PHONE, S("07700 900123"), "GB", out, 13, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	CHECK_EQ_INT(run(PHONE, S("+44 7700 900123"), NULL, out, 13, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	CHECK_EQ_INT(run(PHONE, S("07700 900123"), "GB", NULL, 0, &why), -1);
	CHECK_EQ_STR(why, "is too long");

	/* trim */
	CHECK_EQ_INT(run(TRIM, S(" abc "), NULL, out, 4, &why), 3);
	CHECK_EQ_STR(out, "abc");
	CHECK_EQ_INT(run(TRIM, S(" abc "), NULL, out, 3, &why), -1);
	CHECK_EQ_STR(why, "is too long");
	CHECK_EQ_INT(run(TRIM, S("abc"), NULL, NULL, 0, &why), -1);
	CHECK_EQ_STR(why, "is too long");

	/* why may be NULL */
	CHECK_EQ_INT(cdp_normalize_email(S("ann"), out, sizeof(out), NULL), -1);
	CHECK_EQ_INT(cdp_normalize_phone(S("abc"), "GB", out, sizeof(out), NULL), -1);
	CHECK_EQ_INT(cdp_normalize_trim(S(""), out, sizeof(out), NULL), -1);
}

UNIT_TEST(counted_strings)
{
	char		out[CDP_MAX_NORMALIZED];
	const char *why = NULL;

	/* len shorter than the string: the rest is not read */
	CHECK_EQ_INT(run(EMAIL, "Ann@Example.com.evil.example", 15, NULL, out, sizeof(out), &why), 15);
	CHECK_EQ_STR(out, "ann@example.com");
	CHECK_EQ_INT(run(EMAIL, "ann@example.com@", 15, NULL, out, sizeof(out), &why), 15);
	CHECK_EQ_INT(run(EMAIL, "ann@example.c", 12, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has an empty label in the domain");
	CHECK_EQ_INT(run(EMAIL, "ann@b\xc3\xbc" "cher.de", 6, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has invalid utf-8 in the domain");
	CHECK_EQ_INT(run(PHONE, "07700 900123 ext 5", 12, "GB", out, sizeof(out), &why), 13);
	CHECK_EQ_STR(out, "+447700900123");
	CHECK_EQ_INT(run(PHONE, "07700 900123", 11, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too short for GB");
	CHECK_EQ_INT(run(PHONE, "+44 (0)7700", 6, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too short for GB");
	CHECK_EQ_INT(run(PHONE, "07700\xc2\xa0", 6, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has an invalid character");
	CHECK_EQ_INT(run(TRIM, "abc   def", 3, NULL, out, sizeof(out), &why), 3);
	CHECK_EQ_STR(out, "abc");
	CHECK_EQ_INT(run(TRIM, " \xc2\xa0", 2, NULL, out, sizeof(out), &why), 1);
	CHECK_EQ_STR(out, "\xc2");

	/* an empty value, with or without a pointer */
	CHECK_EQ_INT(cdp_normalize_email("x", 0, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is empty");
	CHECK_EQ_INT(cdp_normalize_email(NULL, 0, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is empty");
	CHECK_EQ_INT(cdp_normalize_phone(NULL, 0, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is empty");
	CHECK_EQ_INT(cdp_normalize_trim(NULL, 0, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is empty");
}

/* Fills buf with n copies of a unit of k bytes; returns the length. */
static size_t
fill(char *buf, const char *unit, size_t k, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		memcpy(buf + i * k, unit, k);
	return n * k;
}

UNIT_TEST(long_garbage)
{
	enum
	{
		BIG = 10240
	};
	char	   *buf = malloc(BIG + 16);
	char		out[CDP_MAX_NORMALIZED];
	const char *why = NULL;
	size_t		n;

	if (buf == NULL)
		abort();

	n = fill(buf, "7", 1, BIG);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has no @");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has too many digits");
	CHECK_EQ_INT(run(TRIM, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too long");

	n = fill(buf, "@", 1, BIG);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has more than one @");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has an invalid character");
	CHECK_EQ_INT(run(TRIM, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too long");

	n = fill(buf, "a", 1, BIG);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has no @");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has letters");

	n = fill(buf, " ", 1, BIG);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(run(TRIM, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");

	n = fill(buf, "\xc2\xa0", 2, BIG / 2);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");
	CHECK_EQ_INT(run(TRIM, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is blank");

	n = fill(buf, "\xc3\xa9", 2, BIG / 2);
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has no @");
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has an invalid character");

	n = fill(buf, "1 ", 2, BIG / 2);
	buf[0] = '+';
	CHECK_EQ_INT(run(PHONE, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has too many digits");

	n = fill(buf, "(0)", 3, BIG / 3);
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has a misplaced (0)");

	/* a long but well-formed address */
	memcpy(buf, "a@", 2);
	n = 2 + fill(buf + 2, "b", 1, BIG);
	memcpy(buf + n, ".com", 4);
	n += 4;
	CHECK_EQ_INT(run(EMAIL, buf, n, NULL, out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "is too long");

	/* a long extension */
	memcpy(buf, "020 7946 0000 x", 15);
	n = 15 + fill(buf + 15, "9", 1, BIG);
	CHECK_EQ_INT(run(PHONE, buf, n, "GB", out, sizeof(out), &why), -1);
	CHECK_EQ_STR(why, "has an extension");

	free(buf);
}

/* xorshift64: a small deterministic pseudo-random generator. */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t	x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Reports a broken invariant of the fuzz loop, at most a few times. */
static void
fuzz_fail(const char *what, const unsigned char *in, size_t len, int *reported)
{
	size_t		i;

	unit_failures++;
	if ((*reported)++ >= 10)
		return;
	fprintf(stderr, "  fuzz: %s for input of %zu bytes:", what, len);
	for (i = 0; i < len; i++)
		fprintf(stderr, " %02x", in[i]);
	fprintf(stderr, "\n");
}

/* Checks the contract of one call: output length and NUL, or a reason and empty output. */
static int
fuzz_contract(int r, const char *out, size_t outsz, const char *why)
{
	if (r == -1)
		return why != NULL && why[0] != '\0' && (outsz == 0 || out[0] == '\0');
	return r >= 0 && (size_t) r < outsz && strlen(out) == (size_t) r;
}

UNIT_TEST(fuzz_random_bytes)
{
	static const char *const alphabets[] = {
		NULL,					/* any byte */
		"0123456789 +()-./#xXe\t",
		"0123456789 +(0)-",
		"aZ09.@-_+\"[]!~ \t",
		"ab.@",
	};
	static const char *const utf8_bits[] = {
		"\xc2\xa0", "\xe2\x80\x8b", "\xe3\x80\x82", "\xc3\xa9", "\xc3", "\xe2\x80", "\xf0\x9f\x98\x80",
		"\xed\xa0\x80", "\xc2\x85", "\xef\xbc\x90"
	};
	static const char *const countries[] = {NULL, "", "GB", "US", "FR", "IT", "RU", "HU", "XX", "de"};
	uint64_t	state = 0x9e3779b97f4a7c15ULL;
	unsigned char in[300];
	char		out[CDP_MAX_NORMALIZED];
	char		again[CDP_MAX_NORMALIZED];
	int			reported = 0;
	long		accepted[3] = {0, 0, 0};
	long		iter;

	for (iter = 0; iter < 100000; iter++)
	{
		uint64_t	r = next_random(&state);
		size_t		len = (r & 0xff) < 0xf0 ? (size_t) (r % 48) : (size_t) (r % sizeof(in));
		const char *alpha = alphabets[(r >> 16) % N_OF(alphabets)];
		const char *country = countries[(r >> 24) % N_OF(countries)];
		size_t		outsz = ((r >> 32) & 7) == 0 ? (size_t) ((r >> 40) % 20) : sizeof(out);
		size_t		i = 0;
		const char *why;
		int			n;

		/* the input: random bytes, or a random phone number, or an address */
		if (((r >> 48) & 15) == 0)
		{
			len = (size_t) snprintf((char *) in, sizeof(in), "%s%llu",
									(r >> 52) & 1 ? "+" : "0",
									(unsigned long long) (next_random(&state) % 100000000000000ULL));
		}
		else if (((r >> 48) & 15) == 1)
		{
			static const char *const parts[] = {
				"ann", "Bob", ".", "..", "+tag", "x", "-", "a-b", "\xc3\xa9", "0", "@", "", " "
			};
			static const char *const domains[] = {
				"example.com", "EXAMPLE.org", "b\xc3\xbc" "cher.de", "a.b", "-x.io", "x-.io", "1.2",
				"co", "ex..com", "xn--p1ai.xn--p1ai", "[1.2.3.4]", "a.b.c.d.e.f.museum", "x.y1"
			};
			uint64_t	c = next_random(&state);

			len = (size_t) snprintf((char *) in, sizeof(in), "%s%s%s%s@%s%s",
									(c & 7) == 0 ? " " : "",
									parts[(c >> 3) % N_OF(parts)],
									parts[(c >> 11) % N_OF(parts)],
									parts[(c >> 19) % N_OF(parts)],
									domains[(c >> 27) % N_OF(domains)],
									((c >> 35) & 7) == 0 ? "\t" : "");
		}
		else
		{
			while (i < len)
			{
				uint64_t	c = next_random(&state);

				if (alpha != NULL && (c & 31) == 0)
				{
					const char *bit = utf8_bits[(c >> 8) % N_OF(utf8_bits)];
					size_t		k = strlen(bit);

					if (i + k > len)
						break;
					memcpy(in + i, bit, k);
					i += k;
				}
				else
					in[i++] = alpha == NULL ? (unsigned char) (c >> 8) :
						(unsigned char) alpha[(c >> 8) % strlen(alpha)];
			}
			len = i;
		}

		/* e-mail: contract, lower case, one @, idempotent */
		why = NULL;
		memset(out, 'Z', sizeof(out));
		n = run(EMAIL, (const char *) in, len, NULL, out, outsz, &why);
		if (!fuzz_contract(n, out, outsz, why))
			fuzz_fail("email contract", in, len, &reported);
		else if (n >= 0)
		{
			accepted[EMAIL]++;
			for (i = 0; i < (size_t) n; i++)
			{
				if (out[i] >= 'A' && out[i] <= 'Z')
					fuzz_fail("email upper case", in, len, &reported);
			}
			if (strchr(out, '@') == NULL || strchr(out, '@') != strrchr(out, '@'))
				fuzz_fail("email @", in, len, &reported);
			if (run(EMAIL, out, (size_t) n, NULL, again, sizeof(again), &why) != n ||
				strcmp(out, again) != 0)
				fuzz_fail("email not idempotent", in, len, &reported);
		}

		/* phone: contract, + and 7..15 digits, idempotent without a default country */
		why = NULL;
		memset(out, 'Z', sizeof(out));
		n = run(PHONE, (const char *) in, len, country, out, outsz, &why);
		if (!fuzz_contract(n, out, outsz, why))
			fuzz_fail("phone contract", in, len, &reported);
		else if (n >= 0)
		{
			accepted[PHONE]++;
			/* the shortest: Austria, +43 and 4 digits */
			if (n < 1 + 6 || n > 1 + CDP_MAX_E164_DIGITS || out[0] != '+' ||
				strspn(out + 1, "0123456789") != (size_t) n - 1)
				fuzz_fail("phone not E.164", in, len, &reported);
			if (run(PHONE, out, (size_t) n, NULL, again, sizeof(again), &why) != n ||
				strcmp(out, again) != 0)
				fuzz_fail("phone not idempotent", in, len, &reported);
		}

		/* trim: contract, no longer than the input, idempotent */
		why = NULL;
		memset(out, 'Z', sizeof(out));
		n = run(TRIM, (const char *) in, len, NULL, out, outsz, &why);
		if (!fuzz_contract(n, out, outsz, why))
			fuzz_fail("trim contract", in, len, &reported);
		else if (n >= 0)
		{
			accepted[TRIM]++;
			if ((size_t) n > len)
				fuzz_fail("trim grew", in, len, &reported);
			if (run(TRIM, out, (size_t) n, NULL, again, sizeof(again), &why) != n ||
				strcmp(out, again) != 0)
				fuzz_fail("trim not idempotent", in, len, &reported);
		}
	}
	/* the loop reached the accepting paths, not only the refusals */
	CHECK(accepted[EMAIL] > 100);
	CHECK(accepted[PHONE] > 1000);
	CHECK(accepted[TRIM] > 10000);
}

const unit_case unit_tests[] = {
	UNIT_CASE(email_clean_and_messy),
	UNIT_CASE(email_invalid),
	UNIT_CASE(email_length_limits),
	UNIT_CASE(phone_gb),
	UNIT_CASE(phone_fr_de_it),
	UNIT_CASE(phone_us),
	UNIT_CASE(phone_ie_nl_es),
	UNIT_CASE(phone_other_countries),
	UNIT_CASE(phone_international_with_other_default),
	UNIT_CASE(phone_refusals),
	UNIT_CASE(phone_every_default_country),
	UNIT_CASE(phone_country_known),
	UNIT_CASE(phone_calling_codes),
	UNIT_CASE(phone_nanp_every_area_code_digit),
	UNIT_CASE(trim_cases),
	UNIT_CASE(buffer_too_small),
	UNIT_CASE(counted_strings),
	UNIT_CASE(long_garbage),
	UNIT_CASE(fuzz_random_bytes),
	UNIT_END
};
