/*
 * normalize.c
 *	  Canonical forms of e-mail addresses, phone numbers and other
 *	  identifiers (see normalize.h for what is and is not checked).
 *
 * Pure C, no PostgreSQL headers: unit-tested (and fuzzed) in test/unit.
 * Every function reads at most len bytes of its input and writes at most
 * outsz bytes of output.
 */
#include "normalize.h"
#include "ascii.h"

#include <stdint.h>
#include <string.h>

/* ----------------------------------------------------------------------
 * Common helpers
 * ----------------------------------------------------------------------
 */

/* Sets the refusal reason, empties the output and returns -1. */
static int
refuse(const char **why, char *out, size_t outsz, const char *reason)
{
	if (why != NULL)
		*why = reason;
	if (out != NULL && outsz > 0)
		out[0] = '\0';
	return -1;
}

/* True for an ASCII letter. */
static int
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Lower-cases an ASCII letter; other bytes are returned as they are. */
static unsigned char
to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char) (c - 'A' + 'a') : c;
}

/*
 * Decodes the UTF-8 character at u[i] (i < len): returns its length in bytes
 * and sets *cp, or returns 0 if the bytes there are not well-formed UTF-8
 * (truncated sequences, overlong forms, surrogates, code points past
 * U+10FFFF).
 */
static int
utf8_decode(const unsigned char *u, size_t i, size_t len, unsigned long *cp)
{
	unsigned char c = u[i];
	unsigned long v;
	unsigned long min;
	int			n;
	int			k;

	if (c < 0x80)
	{
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
	{
		n = 2;
		v = c & 0x1f;
		min = 0x80;
	}
	else if (c >= 0xe0 && c <= 0xef)
	{
		n = 3;
		v = c & 0x0f;
		min = 0x800;
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		n = 4;
		v = c & 0x07;
		min = 0x10000;
	}
	else
		return 0;
	if (len - i < (size_t) n)
		return 0;
	for (k = 1; k < n; k++)
	{
		unsigned char d = u[i + k];

		if ((d & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (d & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/*
 * Narrows [*b, *e) of u to drop ASCII white space and no-break spaces
 * (UTF-8 C2 A0) at both ends.
 */
static void
trim_span(const unsigned char *u, size_t *b, size_t *e)
{
	for (;;)
	{
		if (*b < *e && cdp_is_space(u[*b]))
			(*b)++;
		else if (*e - *b >= 2 && u[*b] == 0xc2 && u[*b + 1] == 0xa0)
			*b += 2;
		else
			break;
	}
	for (;;)
	{
		if (*e > *b && cdp_is_space(u[*e - 1]))
			(*e)--;
		else if (*e - *b >= 2 && u[*e - 2] == 0xc2 && u[*e - 1] == 0xa0)
			*e -= 2;
		else
			break;
	}
}

/* ----------------------------------------------------------------------
 * E-mail addresses
 * ----------------------------------------------------------------------
 */

/* True for the characters of an unquoted local part other than the dot (RFC 5322 atext). */
static int
is_atext(unsigned char c)
{
	return is_alpha(c) || cdp_is_digit(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

/*
 * True for the non-ASCII code points refused inside a domain: C1 controls,
 * Latin-1 punctuation and symbols (no-break space included), Unicode spaces,
 * punctuation and invisible marks, ideographic punctuation (U+3002, read as
 * a dot by IDNA), variation selectors, the byte order mark, fullwidth ASCII
 * punctuation and specials.
 */
static int
is_bad_domain_codepoint(unsigned long cp)
{
	return (cp >= 0x80 && cp <= 0xbf) || cp == 0xd7 || cp == 0xf7 ||
		(cp >= 0x2000 && cp <= 0x206f) ||
		(cp >= 0x2e00 && cp <= 0x2e7f) ||
		(cp >= 0x3000 && cp <= 0x303f) ||
		(cp >= 0xfe00 && cp <= 0xfe0f) ||
		cp == 0xfeff ||
		(cp >= 0xff00 && cp <= 0xff0f) ||
		(cp >= 0xff1a && cp <= 0xff20) ||
		(cp >= 0xfff0 && cp <= 0xffff);
}

/* Checks the local part of an address (n bytes); returns NULL or the reason. */
static const char *
check_local_part(const unsigned char *p, size_t n)
{
	size_t		i;

	if (n == 0)
		return "has an empty local part";
	if (n > CDP_MAX_EMAIL_LOCAL_LEN)
		return "has a local part longer than 64 bytes";
	for (i = 0; i < n; i++)
	{
		if (p[i] == '.')
		{
			if (i > 0 && p[i - 1] == '.')
				return "has consecutive dots in the local part";
		}
		else if (!is_atext(p[i]))
			return "has an invalid character in the local part";
	}
	if (p[0] == '.' || p[n - 1] == '.')
		return "has a dot at the start or end of the local part";
	return NULL;
}

/* Checks one label of a domain (n bytes); returns NULL or the reason. */
static const char *
check_label(const unsigned char *p, size_t n)
{
	if (n == 0)
		return "has an empty label in the domain";
	if (n > CDP_MAX_EMAIL_LABEL_LEN)
		return "has a domain label longer than 63 bytes";
	if (p[0] == '-' || p[n - 1] == '-')
		return "has a domain label starting or ending with -";
	return NULL;
}

/* Checks the domain of an address (n bytes); returns NULL or the reason. */
static const char *
check_domain(const unsigned char *p, size_t n)
{
	size_t		i = 0;
	size_t		label = 0;		/* start of the current label */
	int			dots = 0;
	int			all_digits = 1; /* so far in the current label */
	const char *problem;

	if (n == 0)
		return "has an empty domain";
	if (p[0] == '[')
		return "has an ip address as domain";
	/* no length check: the 254 bytes of the whole address keep it under 253 */
	while (i < n)
	{
		unsigned char c = p[i];

		if (c == '.')
		{
			problem = check_label(p + label, i - label);
			if (problem != NULL)
				return problem;
			dots++;
			i++;
			label = i;
			all_digits = 1;
		}
		else if (c < 0x80)
		{
			if (!(is_alpha(c) || cdp_is_digit(c) || c == '-'))
				return "has an invalid character in the domain";
			if (!cdp_is_digit(c))
				all_digits = 0;
			i++;
		}
		else
		{
			unsigned long cp;
			int			k = utf8_decode(p, i, n, &cp);

			if (k == 0)
				return "has invalid utf-8 in the domain";
			if (is_bad_domain_codepoint(cp))
				return "has an invalid character in the domain";
			all_digits = 0;
			i += (size_t) k;
		}
	}
	problem = check_label(p + label, n - label);
	if (problem != NULL)
		return problem;
	if (dots == 0)
		return "has a domain without a dot";
	if (n - label < 2 || all_digits)
		return "has an invalid top-level domain";
	return NULL;
}

/* E-mail: trim, lower-case ASCII letters, check syntax. */
int
cdp_normalize_email(const char *s, size_t len, char *out, size_t outsz, const char **why)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		b = 0;
	size_t		e = len;
	size_t		at = 0;
	size_t		nat = 0;
	size_t		i;
	const char *problem;

	if (s == NULL || len == 0)
		return refuse(why, out, outsz, "is empty");
	trim_span(u, &b, &e);
	if (b == e)
		return refuse(why, out, outsz, "is blank");
	if (u[b] == '"')
		return refuse(why, out, outsz, "has a quoted local part");
	for (i = b; i < e; i++)
	{
		if (cdp_is_space(u[i]))
			return refuse(why, out, outsz, "contains white space");
		if (cdp_is_control(u[i]))
			return refuse(why, out, outsz, "contains a control character");
		if (u[i] == '@')
		{
			if (nat == 0)
				at = i;
			nat++;
		}
	}
	if (nat == 0)
		return refuse(why, out, outsz, "has no @");
	if (nat > 1)
		return refuse(why, out, outsz, "has more than one @");
	if (e - b > CDP_MAX_EMAIL_LEN)
		return refuse(why, out, outsz, "is too long");
	problem = check_local_part(u + b, at - b);
	if (problem == NULL)
		problem = check_domain(u + at + 1, e - at - 1);
	if (problem != NULL)
		return refuse(why, out, outsz, problem);
	if (out == NULL || outsz < e - b + 1)
		return refuse(why, out, outsz, "is too long");
	for (i = b; i < e; i++)
		out[i - b] = (char) to_lower(u[i]);
	out[e - b] = '\0';
	return (int) (e - b);
}

/* ----------------------------------------------------------------------
 * Other identifiers
 * ----------------------------------------------------------------------
 */

/* Generic identifier: trim white space; refuse empty values and control characters. */
int
cdp_normalize_trim(const char *s, size_t len, char *out, size_t outsz, const char **why)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		b = 0;
	size_t		e = len;
	size_t		i;

	if (s == NULL || len == 0)
		return refuse(why, out, outsz, "is empty");
	trim_span(u, &b, &e);
	if (b == e)
		return refuse(why, out, outsz, "is blank");
	for (i = b; i < e; i++)
	{
		/* C0, DEL, and C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F) */
		if (cdp_is_control(u[i]) ||
			(u[i] == 0xc2 && i + 1 < e && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f))
			return refuse(why, out, outsz, "contains a control character");
	}
	if (out == NULL || outsz < e - b + 1)
		return refuse(why, out, outsz, "is too long");
	memcpy(out, u + b, e - b);
	out[e - b] = '\0';
	return (int) (e - b);
}

/* ----------------------------------------------------------------------
 * Phone numbers
 * ----------------------------------------------------------------------
 */

/* Allowed lengths of a national significant number: bit n for n digits. */
#define LEN(n)		((uint32_t) 1 << (n))
#define LENS(a, b)	((((uint32_t) 2 << (b)) - 1) & ~(LEN(a) - 1))

/* A range of national numbers with its own lengths (mobile numbers, say). */
typedef struct PhoneRule
{
	const char *prefix;			/* leading digits of the national number */
	uint32_t	lengths;
} PhoneRule;

#define PLAN_NANP			0x01	/* area and exchange codes [2-9]XX */
#define PLAN_TRUNK_IF_VALID 0x02	/* national numbers may start with the trunk digit */

/* The numbering plan of one country calling code. */
typedef struct PhonePlan
{
	int			code;			/* country calling code */
	const char *trunk;			/* national trunk prefix, "" if none */
	const char *intl;			/* international prefix, NULL if not read */
	uint32_t	lengths;		/* lengths of national numbers no rule covers */
	const PhoneRule *rules;		/* first matching prefix wins; NULL-terminated */
	int			flags;
	const char *too_short;
	const char *too_long;
	const char *bad_length;
} PhonePlan;

#define PLAN(code, label, trunk, intl, lengths, rules, flags) \
	{code, trunk, intl, lengths, rules, flags, "is too short for " label, \
	 "is too long for " label, "has an invalid length for " label}

static const PhoneRule be_rules[] = {
	{"45", LEN(9)}, {"46", LEN(9)}, {"47", LEN(9)}, {"48", LEN(9)}, {"49", LEN(9)},
	{NULL, 0}
};
static const PhoneRule nl_rules[] = {
	{"800", LENS(7, 10)}, {"90", LENS(7, 10)}, {NULL, 0}
};
static const PhoneRule hu_rules[] = {
	{"20", LEN(9)}, {"30", LEN(9)}, {"31", LEN(9)}, {"50", LEN(9)}, {"70", LEN(9)},
	{NULL, 0}
};
static const PhoneRule it_rules[] = {
	{"3", LENS(9, 11)}, {NULL, 0}
};
static const PhoneRule gb_rules[] = {
	{"1", LEN(9) | LEN(10)}, {"8", LEN(7) | LEN(9) | LEN(10)}, {NULL, 0}
};
static const PhoneRule se_rules[] = {
	{"70", LEN(9)}, {"72", LEN(9)}, {"73", LEN(9)}, {"76", LEN(9)}, {"79", LEN(9)},
	{NULL, 0}
};
static const PhoneRule no_rules[] = {
	{"0", LEN(5)}, {NULL, 0}
};
static const PhoneRule de_rules[] = {
	{"15", LEN(11)}, {"160", LENS(10, 11)}, {"162", LENS(10, 11)}, {"163", LENS(10, 11)},
	{"17", LENS(10, 11)}, {NULL, 0}
};
static const PhoneRule au_rules[] = {
	{"1", LENS(6, 10)}, {NULL, 0}
};
static const PhoneRule nz_rules[] = {
	{"2", LENS(8, 10)}, {"5", LENS(8, 10)}, {"8", LENS(8, 10)}, {NULL, 0}
};
static const PhoneRule sg_rules[] = {
	{"1", LENS(10, 11)}, {"800", LEN(8) | LEN(10)}, {NULL, 0}
};
static const PhoneRule jp_rules[] = {
	{"20", LEN(10)}, {"50", LEN(10)}, {"60", LEN(10)}, {"70", LEN(10)}, {"80", LEN(10)},
	{"90", LEN(10)}, {NULL, 0}
};
static const PhoneRule cn_rules[] = {
	{"13", LEN(11)}, {"14", LEN(11)}, {"15", LEN(11)}, {"16", LEN(11)}, {"17", LEN(11)},
	{"18", LEN(11)}, {"19", LEN(11)}, {NULL, 0}
};
static const PhoneRule lu_rules[] = {
	{"6", LEN(9)}, {NULL, 0}
};
static const PhoneRule ie_rules[] = {
	{"8", LEN(9)}, {NULL, 0}
};
static const PhoneRule il_rules[] = {
	{"5", LEN(9)}, {"7", LEN(9)}, {"1", LENS(7, 12)}, {NULL, 0}
};

/*
 * Numbering plans, sorted by calling code.  Lengths from the national plans
 * as published to the ITU (cross-checked with libphonenumber's possible
 * lengths): geographic, mobile, freephone, shared-cost and premium numbers;
 * short codes dialled only inside a country are left out.
 */
static const PhonePlan phone_plans[] = {
	PLAN(1, "US/CA", "1", "011", LEN(10), NULL, PLAN_NANP),
	PLAN(7, "RU/KZ", "8", "810", LEN(10), NULL, PLAN_TRUNK_IF_VALID),
	PLAN(27, "ZA", "0", "00", LEN(9), NULL, 0),
	PLAN(30, "GR", "", "00", LEN(10), NULL, 0),
	PLAN(31, "NL", "0", "00", LEN(9), nl_rules, 0),
	PLAN(32, "BE", "0", "00", LEN(8), be_rules, 0),
	PLAN(33, "FR", "0", "00", LEN(9), NULL, 0),
	PLAN(34, "ES", "", "00", LEN(9), NULL, 0),
	PLAN(36, "HU", "06", "00", LENS(8, 9), hu_rules, 0),
	PLAN(39, "IT", "", "00", LENS(6, 11), it_rules, 0),
	PLAN(40, "RO", "0", "00", LEN(9), NULL, 0),
	PLAN(41, "CH", "0", "00", LEN(9), NULL, 0),
	PLAN(43, "AT", "0", "00", LENS(4, 13), NULL, 0),
	PLAN(44, "GB", "0", "00", LEN(10), gb_rules, 0),
	PLAN(45, "DK", "", "00", LEN(8), NULL, 0),
	PLAN(46, "SE", "0", "00", LENS(6, 10), se_rules, 0),
	PLAN(47, "NO", "", "00", LEN(8), no_rules, 0),
	PLAN(48, "PL", "", "00", LEN(9), NULL, 0),
	PLAN(49, "DE", "0", "00", LENS(5, 13), de_rules, 0),
	PLAN(52, "MX", "", "00", LEN(10), NULL, 0),
	PLAN(55, "BR", "0", NULL, LENS(10, 11), NULL, 0),
	PLAN(61, "AU", "0", "0011", LEN(9), au_rules, 0),
	PLAN(64, "NZ", "0", "00", LEN(8), nz_rules, 0),
	PLAN(65, "SG", "", NULL, LEN(8), sg_rules, 0),
	PLAN(81, "JP", "0", "010", LEN(9), jp_rules, 0),
	PLAN(86, "CN", "0", "00", LENS(9, 11), cn_rules, 0),
	PLAN(90, "TR", "0", "00", LEN(10), NULL, 0),
	PLAN(91, "IN", "0", "00", LEN(10), NULL, 0),
	PLAN(290, "SH", "", NULL, LENS(4, 5), NULL, 0),
	PLAN(351, "PT", "", "00", LEN(9), NULL, 0),
	PLAN(352, "LU", "", "00", LENS(4, 11), lu_rules, 0),
	PLAN(353, "IE", "0", "00", LENS(7, 10), ie_rules, 0),
	PLAN(358, "FI", "0", "00", LENS(5, 12), NULL, 0),
	PLAN(420, "CZ", "", "00", LEN(9), NULL, 0),
	PLAN(421, "SK", "0", "00", LEN(9), NULL, 0),
	PLAN(683, "NU", "", NULL, LEN(4), NULL, 0),
	PLAN(690, "TK", "", NULL, LENS(4, 7), NULL, 0),
	PLAN(972, "IL", "0", "00", LEN(8), il_rules, 0),
};

#define N_PHONE_PLANS ((int) (sizeof(phone_plans) / sizeof(phone_plans[0])))

/* A default country: ISO 3166 alpha-2 code and calling code (which has a plan). */
typedef struct PhoneCountry
{
	char		iso[3];
	int			code;
} PhoneCountry;

/* Default countries, sorted by ISO code ("UK" is accepted for GB). */
static const PhoneCountry phone_countries[] = {
	{"AG", 1}, {"AI", 1}, {"AS", 1}, {"AT", 43}, {"AU", 61}, {"AX", 358},
	{"BB", 1}, {"BE", 32}, {"BM", 1}, {"BR", 55}, {"BS", 1},
	{"CA", 1}, {"CH", 41}, {"CN", 86}, {"CZ", 420},
	{"DE", 49}, {"DK", 45}, {"DM", 1}, {"DO", 1},
	{"ES", 34}, {"FI", 358}, {"FR", 33},
	{"GB", 44}, {"GD", 1}, {"GG", 44}, {"GR", 30}, {"GU", 1},
	{"HU", 36}, {"IE", 353}, {"IL", 972}, {"IM", 44}, {"IN", 91}, {"IT", 39},
	{"JE", 44}, {"JM", 1}, {"JP", 81},
	{"KN", 1}, {"KY", 1}, {"KZ", 7}, {"LC", 1}, {"LU", 352},
	{"MP", 1}, {"MS", 1}, {"MX", 52},
	{"NL", 31}, {"NO", 47}, {"NZ", 64}, {"PL", 48}, {"PR", 1}, {"PT", 351},
	{"RO", 40}, {"RU", 7},
	{"SE", 46}, {"SG", 65}, {"SK", 421}, {"SX", 1},
	{"TC", 1}, {"TR", 90}, {"TT", 1},
	{"UK", 44}, {"US", 1}, {"VA", 39}, {"VC", 1}, {"VG", 1}, {"VI", 1},
	{"ZA", 27},
};

#define N_PHONE_COUNTRIES ((int) (sizeof(phone_countries) / sizeof(phone_countries[0])))

/*
 * Country calling codes assigned by ITU-T E.164 (geographic, and the
 * international networks and services 800, 808, 870, 878, 881-883, 888,
 * 979), sorted.  The set is prefix-free: no code starts another.
 */
static const unsigned short calling_codes[] = {
	1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49,
	51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86,
	90, 91, 92, 93, 94, 95, 98,
	211, 212, 213, 216, 218,
	220, 221, 222, 223, 224, 225, 226, 227, 228, 229,
	230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
	240, 241, 242, 243, 244, 245, 246, 247, 248, 249,
	250, 251, 252, 253, 254, 255, 256, 257, 258,
	260, 261, 262, 263, 264, 265, 266, 267, 268, 269,
	290, 291, 297, 298, 299,
	350, 351, 352, 353, 354, 355, 356, 357, 358, 359,
	370, 371, 372, 373, 374, 375, 376, 377, 378,
	380, 381, 382, 383, 385, 386, 387, 389,
	420, 421, 423,
	500, 501, 502, 503, 504, 505, 506, 507, 508, 509,
	590, 591, 592, 593, 594, 595, 596, 597, 598, 599,
	670, 672, 673, 674, 675, 676, 677, 678, 679,
	680, 681, 682, 683, 685, 686, 687, 688, 689,
	690, 691, 692,
	800, 808, 850, 852, 853, 855, 856, 870, 878,
	880, 881, 882, 883, 886, 888,
	960, 961, 962, 963, 964, 965, 966, 967, 968,
	970, 971, 972, 973, 974, 975, 976, 977, 979,
	992, 993, 994, 995, 996, 998,
};

#define N_CALLING_CODES ((int) (sizeof(calling_codes) / sizeof(calling_codes[0])))

/* Most digits kept while reading a number: prefix, 15 digits and some slack. */
#define PHONE_MAX_DIGITS 24

/* Is code an assigned country calling code? */
static int
calling_code_assigned(int code)
{
	int			lo = 0;
	int			hi = N_CALLING_CODES - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (calling_codes[mid] == code)
			return 1;
		if (calling_codes[mid] < code)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return 0;
}

/* Numbering plan of a calling code, or NULL if there is none in the table. */
static const PhonePlan *
find_plan(int code)
{
	int			i;

	for (i = 0; i < N_PHONE_PLANS; i++)
	{
		if (phone_plans[i].code == code)
			return &phone_plans[i];
	}
	return NULL;
}

/* Default country of an ISO code (case-insensitive), or NULL. */
static const PhoneCountry *
find_country(const char *country)
{
	unsigned char a;
	unsigned char b;
	int			i;

	if (country == NULL || country[0] == '\0' || country[1] == '\0' || country[2] != '\0')
		return NULL;
	a = (unsigned char) country[0];
	b = (unsigned char) country[1];
	if (a >= 'a' && a <= 'z')
		a = (unsigned char) (a - 'a' + 'A');
	if (b >= 'a' && b <= 'z')
		b = (unsigned char) (b - 'a' + 'A');
	for (i = 0; i < N_PHONE_COUNTRIES; i++)
	{
		if ((unsigned char) phone_countries[i].iso[0] == a &&
			(unsigned char) phone_countries[i].iso[1] == b)
			return &phone_countries[i];
	}
	return NULL;
}

/* Is the country code one cdp_normalize_phone knows as a default country? */
int
cdp_phone_country_known(const char *country)
{
	return find_country(country) != NULL;
}

/* True if the n digits d start with the NUL-terminated prefix. */
static int
starts_with(const char *d, size_t n, const char *prefix)
{
	size_t		k = strlen(prefix);

	return k <= n && memcmp(d, prefix, k) == 0;
}

/* The lengths allowed for a national number of a plan, given its leading digits. */
static uint32_t
plan_lengths(const PhonePlan *plan, const char *nsn, size_t n)
{
	const PhoneRule *r;

	if (plan->rules != NULL)
	{
		for (r = plan->rules; r->prefix != NULL; r++)
		{
			if (starts_with(nsn, n, r->prefix))
				return r->lengths;
		}
	}
	return plan->lengths;
}

/* True if a national number of n digits has a length its plan allows. */
static int
plan_length_ok(const PhonePlan *plan, const char *nsn, size_t n)
{
	return n < 32 && (plan_lengths(plan, nsn, n) & LEN(n)) != 0;
}

/*
 * Checks a national significant number (n digits) against its plan; returns
 * NULL or the reason.
 */
static const char *
check_national_number(const PhonePlan *plan, const char *nsn, size_t n)
{
	uint32_t	lengths = plan_lengths(plan, nsn, n);
	int			min = 0;
	int			max = 31;

	while (min < 31 && (lengths & LEN(min)) == 0)
		min++;
	while (max > 0 && (lengths & LEN(max)) == 0)
		max--;
	if (n < (size_t) min)
		return plan->too_short;
	if (n > (size_t) max)
		return plan->too_long;
	if ((lengths & LEN(n)) == 0)
		return plan->bad_length;
	/* where the trunk prefix starts with 0, no national number does */
	if (plan->trunk[0] == '0' && nsn[0] == '0')
		return "has an invalid national number";
	if (plan->flags & PLAN_NANP)
	{
		if (nsn[0] == '0' || nsn[0] == '1')
			return "has an invalid area code";
		if (nsn[3] == '0' || nsn[3] == '1')
			return "has an invalid exchange code";
	}
	return NULL;
}

/* True for the non-ASCII characters read as separators inside a phone number. */
static int
is_phone_separator(unsigned long cp)
{
	return cp == 0xa0 ||		/* no-break space */
		(cp >= 0x2000 && cp <= 0x200f) ||	/* spaces, zero-width and direction marks */
		(cp >= 0x2010 && cp <= 0x2015) ||	/* hyphens and dashes */
		cp == 0x202f || cp == 0x205f || cp == 0x2060 ||
		cp == 0x2212 ||			/* minus sign */
		cp == 0x3000 ||			/* ideographic space */
		cp == 0xfeff;			/* byte order mark, zero-width no-break space */
}

/* Case-insensitive comparison of n bytes with an ASCII lower-case word. */
static int
matches_word(const unsigned char *u, size_t n, const char *word)
{
	size_t		k = strlen(word);
	size_t		i;

	if (n < k)
		return 0;
	for (i = 0; i < k; i++)
	{
		if (to_lower(u[i]) != (unsigned char) word[i])
			return 0;
	}
	return 1;
}

/* Does u[i..e) read as an extension: "x123", "ext. 123", "#123", ";ext=123"? */
static int
is_extension(const unsigned char *u, size_t i, size_t e)
{
	static const char *const markers[] = {"extension", "extn", "ext", "x", "#"};
	size_t		nmarkers = sizeof(markers) / sizeof(markers[0]);
	size_t		k;
	int			ndigits = 0;

	while (i < e && (u[i] == ',' || u[i] == ';' || u[i] == ' ' || u[i] == '\t'))
		i++;
	for (k = 0; k < nmarkers; k++)
	{
		if (matches_word(u + i, e - i, markers[k]))
			break;
	}
	if (k == nmarkers)
		return 0;
	i += strlen(markers[k]);
	while (i < e && (u[i] == '.' || u[i] == ':' || u[i] == '=' || u[i] == ' ' || u[i] == '\t'))
		i++;
	while (i < e && (cdp_is_digit(u[i]) || u[i] == ' ' || u[i] == '\t'))
	{
		if (cdp_is_digit(u[i]))
			ndigits++;
		i++;
	}
	return i == e && ndigits > 0;
}

/* Writes the decimal digits of code (1..999) into buf; returns their count. */
static size_t
format_code(int code, char *buf)
{
	char		tmp[4];
	size_t		n = 0;
	size_t		k;

	do
	{
		tmp[n++] = (char) ('0' + code % 10);
		code /= 10;
	} while (code > 0 && n < sizeof(tmp));
	for (k = 0; k < n; k++)
		buf[k] = tmp[n - 1 - k];
	return n;
}

/* Phone: to E.164 with a default country for national numbers. */
int
cdp_normalize_phone(const char *s, size_t len, const char *country, char *out, size_t outsz,
					const char **why)
{
	const unsigned char *u = (const unsigned char *) s;
	char		digits[PHONE_MAX_DIGITS];
	size_t		ndigits = 0;
	int			plus = 0;
	int			zero_seen = 0;	/* a "(0)" was read (and dropped) ... */
	size_t		zero_at = 0;	/* ... after this many digits */
	size_t		b = 0;
	size_t		e = len;
	size_t		i;
	int			have_country = country != NULL && country[0] != '\0';
	const PhoneCountry *dc = have_country ? find_country(country) : NULL;
	const PhonePlan *plan = NULL;
	const char *nsn;
	size_t		nlen;
	char		cc[4];
	size_t		cclen;
	int			code = 0;
	const char *problem;

	if (s == NULL || len == 0)
		return refuse(why, out, outsz, "is empty");
	trim_span(u, &b, &e);
	if (b == e)
		return refuse(why, out, outsz, "is blank");

	/* Read digits, a leading +, (0) and separators; stop at anything else. */
	i = b;
	while (i < e)
	{
		unsigned char c = u[i];
		unsigned long cp;
		int			k;

		if (cdp_is_digit(c))
		{
			if (ndigits < PHONE_MAX_DIGITS)
				digits[ndigits] = (char) c;
			ndigits++;
			i++;
		}
		else if (c == '+')
		{
			if (plus || ndigits > 0 || zero_seen)
				return refuse(why, out, outsz, "has a misplaced +");
			plus = 1;
			i++;
		}
		else if (c == '(' && e - i >= 3 && u[i + 1] == '0' && u[i + 2] == ')')
		{
			if (zero_seen)
				return refuse(why, out, outsz, "has a misplaced (0)");
			zero_seen = 1;
			zero_at = ndigits;
			i += 3;
		}
		else if (c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' || c == '(' || c == ')')
			i++;
		else if (c >= 0x80 && (k = utf8_decode(u, i, e, &cp)) > 0 && is_phone_separator(cp))
			i += (size_t) k;
		else
			break;
	}
	if (i < e)
	{
		size_t		j;

		if (ndigits > 0 && is_extension(u, i, e))
			return refuse(why, out, outsz, "has an extension");
		for (j = b; j < e; j++)
		{
			if (is_alpha(u[j]))
				return refuse(why, out, outsz, "has letters");
		}
		if (cdp_is_control(u[i]))
			return refuse(why, out, outsz, "contains a control character");
		return refuse(why, out, outsz, "has an invalid character");
	}
	if (ndigits == 0)
		return refuse(why, out, outsz, "has no digits");
	if (ndigits > PHONE_MAX_DIGITS)
		return refuse(why, out, outsz, "has too many digits");

	plan = dc != NULL ? find_plan(dc->code) : NULL;
	if (plus || (plan != NULL && plan->intl != NULL && starts_with(digits, ndigits, plan->intl)) ||
		(plan == NULL && starts_with(digits, ndigits, "00")))
	{
		/* International: + or prefix, calling code, national number. */
		size_t		start = plus ? 0 : (plan != NULL ? strlen(plan->intl) : 2);
		const char *rest = digits + start;
		size_t		rlen = ndigits - start;

		if (rlen == 0)
			return refuse(why, out, outsz, "has too few digits");
		for (cclen = 1; cclen <= 3 && cclen <= rlen; cclen++)
		{
			int			c = 0;
			size_t		k;

			for (k = 0; k < cclen; k++)
				c = c * 10 + (rest[k] - '0');
			if (rest[0] != '0' && calling_code_assigned(c))
			{
				code = c;
				break;
			}
		}
		if (code == 0)
			return refuse(why, out, outsz, "has an unknown country calling code");
		plan = find_plan(code);
		nsn = rest + cclen;
		nlen = rlen - cclen;
		if (zero_seen)
		{
			if (zero_at != start + cclen || (plan != NULL && strcmp(plan->trunk, "0") != 0))
				return refuse(why, out, outsz, "has a misplaced (0)");
		}
		else if (plan != NULL && strcmp(plan->trunk, "0") == 0 && nlen > 0 && nsn[0] == '0')
		{
			/* "+44 07700 900123": the trunk prefix written by mistake */
			nsn++;
			nlen--;
		}
	}
	else
	{
		/* National: the default country's trunk prefix, then the number. */
		if (!have_country)
			return refuse(why, out, outsz, "has no country code and no default country");
		if (plan == NULL)
			return refuse(why, out, outsz, "has no country code and an unknown default country");
		code = plan->code;
		cclen = format_code(code, cc);
		nsn = digits;
		nlen = ndigits;
		if (zero_seen)
		{
			/* "(0)20 7946 0000": the (0) is the trunk prefix */
			if (zero_at != 0 || strcmp(plan->trunk, "0") != 0)
				return refuse(why, out, outsz, "has a misplaced (0)");
		}
		else if (plan->trunk[0] != '\0' && starts_with(nsn, nlen, plan->trunk))
		{
			size_t		tl = strlen(plan->trunk);

			if (!(plan->flags & PLAN_TRUNK_IF_VALID) ||
				plan_length_ok(plan, nsn + tl, nlen - tl) || !plan_length_ok(plan, nsn, nlen))
			{
				nsn += tl;
				nlen -= tl;
			}
		}
	}

	if (plan != NULL)
	{
		problem = check_national_number(plan, nsn, nlen);
		if (problem != NULL)
			return refuse(why, out, outsz, problem);
	}
	else if (cclen + nlen < 8)
		return refuse(why, out, outsz, "has too few digits");
	else if (cclen + nlen > CDP_MAX_E164_DIGITS)
		return refuse(why, out, outsz, "has too many digits");

	if (out == NULL || outsz < 1 + cclen + nlen + 1)
		return refuse(why, out, outsz, "is too long");
	out[0] = '+';
	format_code(code, out + 1);
	memcpy(out + 1 + cclen, nsn, nlen);
	out[1 + cclen + nlen] = '\0';
	return (int) (1 + cclen + nlen);
}
