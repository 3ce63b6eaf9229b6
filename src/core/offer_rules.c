/*
 * offer_rules.c
 *	  Eligibility rules of offers (see offer_rules.h): a strict JSON parser
 *	  into a DOM, the compiler of rules with their validation, and their
 *	  evaluation against the facts of one customer with a reason.
 *
 * The facts a rule may test, their types and where they are read in the
 * facts document:
 *
 *	rfm_segment					text		facts.rfm_segment
 *	last_channel				text		facts.last_channel
 *	clv, p_alive, orders,		number		facts.<name>
 *	revenue, days_since_last_purchase
 *	days_since_last_contact		number		facts.days_since_last_contact, or
 *				with a key (a channel):		facts.days_since_last_contact_by_channel[key]
 *	events		key required	number		facts.events[key], absent means 0
 *	interest	key required	number		facts.interest[key], absent means 0
 *	trait		key required	scalar		facts.traits[key]
 *	open_break	key required	boolean		whether facts.open_breaks has member key
 *	break_products	key required	list	facts.open_breaks[key], absent means []
 *	consent		key required	boolean		facts.consent[key]
 *	event		key required	scalar		facts.event[key]: a property of the event
 *				that fired a trigger (or its type, channel, amount)
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "offer_rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XSTR(x) #x
#define STR(x) XSTR(x)

/* How many bytes of a string, and items of an array, messages show. */
#define SHOW_STRING_BYTES	64
#define SHOW_ARRAY_ITEMS	8

/* Memory from the arena; never NULL, never a request of 0 bytes. */
static void *
arena_alloc(CdpArena *a, size_t size)
{
	return a->alloc(a->ctx, size > 0 ? size : 1);
}

/*
 * Bounded output of messages.
 */

/* Text written into a buffer of cap bytes, always NUL-terminated. */
typedef struct Out
{
	char	   *buf;
	size_t		cap;
	size_t		len;
	int			cut;			/* something did not fit */
} Out;

static void
out_init(Out *o, char *buf, size_t cap)
{
	o->buf = buf;
	o->cap = buf != NULL ? cap : 0;
	o->len = 0;
	o->cut = 0;
	if (o->cap > 0)
		buf[0] = '\0';
}

/* Whether a byte continues a UTF-8 sequence. */
static int
is_continuation(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

/*
 * The length of the longest prefix of the n bytes at s that is at most max
 * bytes long and does not split a UTF-8 sequence (for text that is not
 * UTF-8, at most 3 bytes are given up).
 */
static size_t
utf8_prefix(const char *s, size_t n, size_t max)
{
	size_t		k = max;

	if (n <= max)
		return n;
	while (k > 0 && max - k < 3 && is_continuation((unsigned char) s[k]))
		k--;
	return is_continuation((unsigned char) s[k]) ? max : k;
}

/* Appends n bytes; once something did not fit, nothing more is written. */
static void
out_mem(Out *o, const char *s, size_t n)
{
	size_t		k;

	if (n == 0)
		return;
	if (o->cut || o->cap == 0)
	{
		o->cut = 1;
		return;
	}
	k = utf8_prefix(s, n, o->cap - 1 - o->len);
	if (k < n)
		o->cut = 1;
	if (k > 0)
		memcpy(o->buf + o->len, s, k);
	o->len += k;
	o->buf[o->len] = '\0';
}

static void
out_str(Out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void
out_size(Out *o, size_t v)
{
	char		b[32];

	snprintf(b, sizeof(b), "%zu", v);
	out_str(o, b);
}

/* Appends a number in its shortest form that reads back to the same double. */
static void
out_number(Out *o, double d)
{
	char		b[40];
	int			prec;

	if (d == floor(d) && fabs(d) < 1e15)
	{
		snprintf(b, sizeof(b), "%.0f", d);
		out_str(o, b);
		return;
	}
	for (prec = 1; prec <= 17; prec++)
	{
		snprintf(b, sizeof(b), "%.*g", prec, d);
		if (strtod(b, NULL) == d)
			break;
	}
	out_str(o, b);
}

/* Ends the text with "..." when something was cut. */
static void
out_end(Out *o)
{
	size_t		p;

	if (!o->cut || o->cap < 4)
		return;
	p = o->len < o->cap - 4 ? o->len : o->cap - 4;
	p = utf8_prefix(o->buf, o->len, p);
	memcpy(o->buf + p, "...", 4);
	o->len = p + 3;
}

/*
 * Appends a string between double quotes, at most SHOW_STRING_BYTES of it
 * followed by "..." when longer, with quotes, backslashes and control
 * characters escaped as in JSON.
 */
static void
out_quoted(Out *o, const char *s, size_t len)
{
	size_t		n = utf8_prefix(s, len, SHOW_STRING_BYTES);
	size_t		i;
	size_t		from = 0;

	out_mem(o, "\"", 1);
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\' || c < 0x20 || c == 0x7f)
		{
			char		esc[8];

			out_mem(o, s + from, i - from);
			if (c == '"' || c == '\\')
				snprintf(esc, sizeof(esc), "\\%c", c);
			else
				snprintf(esc, sizeof(esc), "\\u%04x", c);
			out_str(o, esc);
			from = i + 1;
		}
	}
	out_mem(o, s + from, n - from);
	if (n < len)
		out_str(o, "...");
	out_mem(o, "\"", 1);
}

/* Appends a JSON value, long strings and arrays shortened, objects elided. */
static void
out_value(Out *o, const CdpJson *v, int nested)
{
	size_t		i;

	switch (v->type)
	{
		case CDP_JSON_NULL:
			out_str(o, "null");
			break;
		case CDP_JSON_BOOL:
			out_str(o, v->boolean ? "true" : "false");
			break;
		case CDP_JSON_NUMBER:
			out_number(o, v->number);
			break;
		case CDP_JSON_STRING:
			out_quoted(o, v->str, v->len);
			break;
		case CDP_JSON_ARRAY:
			if (v->n > 0 && nested)
			{
				out_str(o, "[...]");
				break;
			}
			out_str(o, "[");
			for (i = 0; i < v->n && i < SHOW_ARRAY_ITEMS; i++)
			{
				if (i > 0)
					out_str(o, ", ");
				out_value(o, v->items[i], 1);
			}
			if (v->n > SHOW_ARRAY_ITEMS)
				out_str(o, ", ...");
			out_str(o, "]");
			break;
		case CDP_JSON_OBJECT:
			out_str(o, v->n > 0 ? "{...}" : "{}");
			break;
	}
}

/* What a value is, for messages: "a string", "null", ... */
static const char *
type_phrase(const CdpJson *v)
{
	switch (v->type)
	{
		case CDP_JSON_NULL:
			return "null";
		case CDP_JSON_BOOL:
			return "a boolean";
		case CDP_JSON_NUMBER:
			return "a number";
		case CDP_JSON_STRING:
			return "a string";
		case CDP_JSON_ARRAY:
			return v->n > 0 ? "an array" : "an empty array";
		case CDP_JSON_OBJECT:
			return "an object";
	}
	return "a value";
}

/*
 * The JSON parser: strict RFC 8259, recursive descent, the depth of the
 * recursion bounded by CDP_JSON_MAX_DEPTH.
 */

typedef struct Parser
{
	CdpArena   *a;
	const char *s;
	size_t		len;
	size_t		pos;
	int			depth;
	/* The first error: what, where, and the byte or key it is about. */
	const char *msg;
	size_t		at;
	int			byte;			/* -1: none */
	const char *key;
	size_t		key_len;
} Parser;

/* A parsed item of an array or member of an object, before they are counted. */
typedef struct Cell
{
	CdpJson    *v;
	const char *key;
	size_t		key_len;
	size_t		at;				/* offset of the key */
	struct Cell *next;
} Cell;

/* A key to look for duplicates among, sorted by name then position. */
typedef struct KeyRef
{
	const char *key;
	size_t		len;
	size_t		at;
} KeyRef;

static CdpJson *parse_value(Parser *p);

static CdpJson *
fail(Parser *p, size_t at, const char *msg)
{
	p->msg = msg;
	p->at = at;
	return NULL;
}

/* Writes the message of a parse error. */
static void
out_parse_error(Out *o, const Parser *p)
{
	out_str(o, "invalid JSON at byte ");
	out_size(o, p->at);
	out_str(o, ": ");
	out_str(o, p->msg);
	if (p->byte >= 0x21 && p->byte < 0x7f)
	{
		char		b[8];

		snprintf(b, sizeof(b), " '%c'", p->byte);
		out_str(o, b);
	}
	else if (p->byte >= 0)
	{
		char		b[16];

		snprintf(b, sizeof(b), " 0x%02x", p->byte);
		out_str(o, b);
	}
	if (p->key != NULL)
	{
		out_str(o, " ");
		out_quoted(o, p->key, p->key_len);
	}
}

static CdpJson *
new_value(Parser *p, CdpJsonType type)
{
	CdpJson    *v = arena_alloc(p->a, sizeof(CdpJson));

	memset(v, 0, sizeof(CdpJson));
	v->type = type;
	return v;
}

static void
skip_ws(Parser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->s[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static int
is_digit_at(const Parser *p, size_t i)
{
	return i < p->len && p->s[i] >= '0' && p->s[i] <= '9';
}

static CdpJson *
unexpected(Parser *p)
{
	if (p->pos >= p->len)
		return fail(p, p->len, "unexpected end of input");
	p->byte = (unsigned char) p->s[p->pos];
	return fail(p, p->pos, "unexpected character");
}

static CdpJson *
parse_literal(Parser *p, const char *word, CdpJsonType type, int boolean)
{
	size_t		n = strlen(word);
	CdpJson    *v;

	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
		return fail(p, p->pos, "invalid literal");
	p->pos += n;
	v = new_value(p, type);
	v->boolean = boolean;
	return v;
}

static CdpJson *
parse_number(Parser *p)
{
	size_t		start = p->pos;
	size_t		i = p->pos;
	size_t		n;
	char		local[64];
	char	   *b;
	double		d;
	CdpJson    *v;

	if (p->s[i] == '-')
		i++;
	if (!is_digit_at(p, i))
		return fail(p, i, "digit expected in a number");
	if (p->s[i] == '0')
	{
		i++;
		if (is_digit_at(p, i))
			return fail(p, i - 1, "leading zero in a number");
	}
	else
		while (is_digit_at(p, i))
			i++;
	if (i < p->len && p->s[i] == '.')
	{
		i++;
		if (!is_digit_at(p, i))
			return fail(p, i, "digit expected after the decimal point");
		while (is_digit_at(p, i))
			i++;
	}
	if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E'))
	{
		i++;
		if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (!is_digit_at(p, i))
			return fail(p, i, "digit expected in the exponent");
		while (is_digit_at(p, i))
			i++;
	}
	n = i - start;
	b = n < sizeof(local) ? local : arena_alloc(p->a, n + 1);
	memcpy(b, p->s + start, n);
	b[n] = '\0';
	d = strtod(b, NULL);
	if (!isfinite(d))
		return fail(p, start, "number out of range");
	p->pos = i;
	v = new_value(p, CDP_JSON_NUMBER);
	v->number = d;
	return v;
}

static int
hex4(const char *s, unsigned *out)
{
	unsigned	v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned) (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned) (c - 'A' + 10);
		else
			return 0;
	}
	*out = v;
	return 1;
}

/* Writes a code point as UTF-8; returns the number of bytes. */
static size_t
put_utf8(char *b, unsigned cp)
{
	if (cp < 0x80)
	{
		b[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		b[0] = (char) (0xC0 | (cp >> 6));
		b[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		b[0] = (char) (0xE0 | (cp >> 12));
		b[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	b[0] = (char) (0xF0 | (cp >> 18));
	b[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	b[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	b[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * Parses a string at p->pos (a double quote) into arena memory.  The
 * decoded string is never longer than its source, escapes included, so
 * the source length is allocated once the closing quote is found.
 */
static int
parse_string(Parser *p, const char **out, size_t *out_len)
{
	size_t		start = p->pos + 1;
	size_t		end = start;
	size_t		j;
	size_t		o = 0;
	char	   *b;

	for (;;)
	{
		unsigned char c;

		if (end >= p->len)
		{
			fail(p, p->pos, "unterminated string");
			return 0;
		}
		c = (unsigned char) p->s[end];
		if (c == '"')
			break;
		if (c < 0x20)
		{
			fail(p, end, "control character in a string");
			return 0;
		}
		end += c == '\\' ? 2 : 1;
	}
	b = arena_alloc(p->a, end - start + 1);
	j = start;
	while (j < end)
	{
		char		c = p->s[j];
		size_t		esc = j;
		unsigned	cp;
		unsigned	lo;

		if (c != '\\')
		{
			b[o++] = c;
			j++;
			continue;
		}
		j++;					/* a backslash is never last before end */
		switch (p->s[j])
		{
			case '"':
			case '\\':
			case '/':
				b[o++] = p->s[j];
				break;
			case 'b':
				b[o++] = '\b';
				break;
			case 'f':
				b[o++] = '\f';
				break;
			case 'n':
				b[o++] = '\n';
				break;
			case 'r':
				b[o++] = '\r';
				break;
			case 't':
				b[o++] = '\t';
				break;
			case 'u':
				if (end - j < 5 || !hex4(p->s + j + 1, &cp))
				{
					fail(p, esc, "invalid \\u escape");
					return 0;
				}
				j += 4;
				if (cp >= 0xDC00 && cp <= 0xDFFF)
				{
					fail(p, esc, "lone surrogate in a \\u escape");
					return 0;
				}
				if (cp >= 0xD800 && cp <= 0xDBFF)
				{
					if (end - j < 7 || p->s[j + 1] != '\\' || p->s[j + 2] != 'u' ||
						!hex4(p->s + j + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
					{
						fail(p, esc, "lone surrogate in a \\u escape");
						return 0;
					}
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					j += 6;
				}
				o += put_utf8(b + o, cp);
				break;
			default:
				fail(p, esc, "invalid escape in a string");
				return 0;
		}
		j++;
	}
	b[o] = '\0';
	p->pos = end + 1;
	*out = b;
	*out_len = o;
	return 1;
}

/* Enters an array or object. */
static int
enter(Parser *p)
{
	if (p->depth >= CDP_JSON_MAX_DEPTH)
	{
		fail(p, p->pos, "nesting deeper than " STR(CDP_JSON_MAX_DEPTH) " levels");
		return 0;
	}
	p->depth++;
	p->pos++;
	return 1;
}

static CdpJson *
parse_array(Parser *p)
{
	Cell	   *first = NULL;
	Cell	  **last = &first;
	Cell	   *c;
	size_t		n = 0;
	size_t		i;
	CdpJson    *v;

	if (!enter(p))
		return NULL;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']')
		p->pos++;
	else
		for (;;)
		{
			CdpJson    *item = parse_value(p);

			if (item == NULL)
				return NULL;
			c = arena_alloc(p->a, sizeof(Cell));
			c->v = item;
			c->next = NULL;
			*last = c;
			last = &c->next;
			n++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == ',')
			{
				p->pos++;
				continue;
			}
			if (p->pos < p->len && p->s[p->pos] == ']')
			{
				p->pos++;
				break;
			}
			if (p->pos >= p->len)
				return unexpected(p);
			return fail(p, p->pos, "expected ',' or ']'");
		}
	p->depth--;
	v = new_value(p, CDP_JSON_ARRAY);
	v->n = n;
	if (n > 0)
	{
		v->items = arena_alloc(p->a, n * sizeof(CdpJson *));
		for (i = 0, c = first; c != NULL; c = c->next, i++)
			v->items[i] = c->v;
	}
	return v;
}

static int
compare_keyrefs(const void *x, const void *y)
{
	const KeyRef *a = x;
	const KeyRef *b = y;
	size_t		n = a->len < b->len ? a->len : b->len;
	int			c = n > 0 ? memcmp(a->key, b->key, n) : 0;

	if (c != 0)
		return c;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->at < b->at ? -1 : a->at > b->at;
}

/*
 * Finds a duplicate key of an object: directly for small objects, by
 * sorting for larger ones.  Sets the error to the first repeated key in
 * the order of the document.
 */
static int
check_duplicates(Parser *p, const CdpJson *v, const size_t *ats)
{
	size_t		i;
	size_t		j;
	size_t		best = (size_t) -1;
	const char *key = NULL;
	size_t		key_len = 0;

	if (v->n <= 16)
	{
		for (j = 1; j < v->n && best == (size_t) -1; j++)
			for (i = 0; i < j; i++)
				if (v->key_lens[i] == v->key_lens[j] &&
					memcmp(v->keys[i], v->keys[j], v->key_lens[j]) == 0)
				{
					best = ats[j];
					key = v->keys[j];
					key_len = v->key_lens[j];
					break;
				}
	}
	else
	{
		KeyRef	   *refs = arena_alloc(p->a, v->n * sizeof(KeyRef));

		for (i = 0; i < v->n; i++)
		{
			refs[i].key = v->keys[i];
			refs[i].len = v->key_lens[i];
			refs[i].at = ats[i];
		}
		qsort(refs, v->n, sizeof(KeyRef), compare_keyrefs);
		for (i = 1; i < v->n; i++)
			if (refs[i].len == refs[i - 1].len &&
				memcmp(refs[i].key, refs[i - 1].key, refs[i].len) == 0 &&
				refs[i].at < best)
			{
				best = refs[i].at;
				key = refs[i].key;
				key_len = refs[i].len;
			}
	}
	if (best == (size_t) -1)
		return 1;
	fail(p, best, "duplicate key");
	p->key = key;
	p->key_len = key_len;
	return 0;
}

static CdpJson *
parse_object(Parser *p)
{
	Cell	   *first = NULL;
	Cell	  **last = &first;
	Cell	   *c;
	size_t		n = 0;
	size_t		i;
	size_t	   *ats;
	CdpJson    *v;

	if (!enter(p))
		return NULL;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}')
		p->pos++;
	else
		for (;;)
		{
			c = arena_alloc(p->a, sizeof(Cell));
			c->next = NULL;
			skip_ws(p);
			if (p->pos >= p->len)
				return unexpected(p);
			if (p->s[p->pos] != '"')
				return fail(p, p->pos, "object key expected");
			c->at = p->pos;
			if (!parse_string(p, &c->key, &c->key_len))
				return NULL;
			skip_ws(p);
			if (p->pos >= p->len)
				return unexpected(p);
			if (p->s[p->pos] != ':')
				return fail(p, p->pos, "expected ':'");
			p->pos++;
			c->v = parse_value(p);
			if (c->v == NULL)
				return NULL;
			*last = c;
			last = &c->next;
			n++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == ',')
			{
				p->pos++;
				continue;
			}
			if (p->pos < p->len && p->s[p->pos] == '}')
			{
				p->pos++;
				break;
			}
			if (p->pos >= p->len)
				return unexpected(p);
			return fail(p, p->pos, "expected ',' or '}'");
		}
	p->depth--;
	v = new_value(p, CDP_JSON_OBJECT);
	v->n = n;
	if (n == 0)
		return v;
	v->items = arena_alloc(p->a, n * sizeof(CdpJson *));
	v->keys = arena_alloc(p->a, n * sizeof(const char *));
	v->key_lens = arena_alloc(p->a, n * sizeof(size_t));
	ats = arena_alloc(p->a, n * sizeof(size_t));
	for (i = 0, c = first; c != NULL; c = c->next, i++)
	{
		v->items[i] = c->v;
		v->keys[i] = c->key;
		v->key_lens[i] = c->key_len;
		ats[i] = c->at;
	}
	if (!check_duplicates(p, v, ats))
		return NULL;
	return v;
}

static CdpJson *
parse_value(Parser *p)
{
	CdpJson    *v;

	skip_ws(p);
	if (p->pos >= p->len)
		return unexpected(p);
	switch (p->s[p->pos])
	{
		case '{':
			return parse_object(p);
		case '[':
			return parse_array(p);
		case '"':
			v = new_value(p, CDP_JSON_STRING);
			if (!parse_string(p, &v->str, &v->len))
				return NULL;
			return v;
		case 't':
			return parse_literal(p, "true", CDP_JSON_BOOL, 1);
		case 'f':
			return parse_literal(p, "false", CDP_JSON_BOOL, 0);
		case 'n':
			return parse_literal(p, "null", CDP_JSON_NULL, 0);
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			return parse_number(p);
		default:
			return unexpected(p);
	}
}

/* Parses a whole document; on error, p says what went wrong. */
static CdpJson *
parse_document(Parser *p, CdpArena *a, const char *s, size_t len)
{
	CdpJson    *v;

	memset(p, 0, sizeof(Parser));
	p->a = a;
	p->s = s != NULL ? s : "";
	p->len = s != NULL ? len : 0;
	p->byte = -1;
	v = parse_value(p);
	if (v == NULL)
		return NULL;
	skip_ws(p);
	if (p->pos < p->len)
		return fail(p, p->pos, "unexpected data after the value");
	return v;
}

CdpJson *
cdp_json_parse(CdpArena *a, const char *s, size_t len, char *err, size_t errlen)
{
	Parser		p;
	Out			o;
	CdpJson    *v = parse_document(&p, a, s, len);

	out_init(&o, err, errlen);
	if (v == NULL)
	{
		out_parse_error(&o, &p);
		out_end(&o);
	}
	return v;
}

const CdpJson *
cdp_json_getn(const CdpJson *obj, const char *key, size_t len)
{
	size_t		i;

	if (obj == NULL || obj->type != CDP_JSON_OBJECT)
		return NULL;
	for (i = 0; i < obj->n; i++)
		if (obj->key_lens[i] == len && (len == 0 || memcmp(obj->keys[i], key, len) == 0))
			return obj->items[i];
	return NULL;
}

const CdpJson *
cdp_json_get(const CdpJson *obj, const char *key)
{
	return cdp_json_getn(obj, key, strlen(key));
}

/*
 * Facts and operators.
 */

typedef enum FactType
{
	FT_NUMBER,
	FT_TEXT,
	FT_BOOL,
	FT_LIST,
	FT_SCALAR
} FactType;

typedef enum KeyUse
{
	KEY_NONE,
	KEY_OPTIONAL,
	KEY_REQUIRED
} KeyUse;

typedef enum FactId
{
	F_RFM_SEGMENT,
	F_LAST_CHANNEL,
	F_CLV,
	F_P_ALIVE,
	F_ORDERS,
	F_REVENUE,
	F_DAYS_SINCE_LAST_PURCHASE,
	F_DAYS_SINCE_LAST_CONTACT,
	F_EVENTS,
	F_INTEREST,
	F_TRAIT,
	F_OPEN_BREAK,
	F_BREAK_PRODUCTS,
	F_CONSENT,
	F_EVENT,
	N_FACTS
} FactId;

typedef struct FactDef
{
	const char *name;
	FactType	type;
	KeyUse		key;
} FactDef;

static const FactDef fact_defs[N_FACTS] = {
	[F_RFM_SEGMENT] = {"rfm_segment", FT_TEXT, KEY_NONE},
	[F_LAST_CHANNEL] = {"last_channel", FT_TEXT, KEY_NONE},
	[F_CLV] = {"clv", FT_NUMBER, KEY_NONE},
	[F_P_ALIVE] = {"p_alive", FT_NUMBER, KEY_NONE},
	[F_ORDERS] = {"orders", FT_NUMBER, KEY_NONE},
	[F_REVENUE] = {"revenue", FT_NUMBER, KEY_NONE},
	[F_DAYS_SINCE_LAST_PURCHASE] = {"days_since_last_purchase", FT_NUMBER, KEY_NONE},
	[F_DAYS_SINCE_LAST_CONTACT] = {"days_since_last_contact", FT_NUMBER, KEY_OPTIONAL},
	[F_EVENTS] = {"events", FT_NUMBER, KEY_REQUIRED},
	[F_INTEREST] = {"interest", FT_NUMBER, KEY_REQUIRED},
	[F_TRAIT] = {"trait", FT_SCALAR, KEY_REQUIRED},
	[F_OPEN_BREAK] = {"open_break", FT_BOOL, KEY_REQUIRED},
	[F_BREAK_PRODUCTS] = {"break_products", FT_LIST, KEY_REQUIRED},
	[F_CONSENT] = {"consent", FT_BOOL, KEY_REQUIRED},
	[F_EVENT] = {"event", FT_SCALAR, KEY_REQUIRED},
};

static const char *const fact_type_names[] = {
	[FT_NUMBER] = "number",
	[FT_TEXT] = "text",
	[FT_BOOL] = "boolean",
	[FT_LIST] = "list",
	[FT_SCALAR] = "scalar",
};

typedef enum Op
{
	OP_EQ,
	OP_NE,
	OP_LT,
	OP_LTE,
	OP_GT,
	OP_GTE,
	OP_IN,
	OP_NOT_IN,
	OP_CONTAINS,
	OP_EXISTS,
	N_OPS
} Op;

static const char *const op_names[N_OPS] = {
	[OP_EQ] = "eq",
	[OP_NE] = "ne",
	[OP_LT] = "lt",
	[OP_LTE] = "lte",
	[OP_GT] = "gt",
	[OP_GTE] = "gte",
	[OP_IN] = "in",
	[OP_NOT_IN] = "not_in",
	[OP_CONTAINS] = "contains",
	[OP_EXISTS] = "exists",
};

/* What an operand (or each item of an array operand) must be. */
typedef enum Want
{
	W_NONE = 0,					/* the operator does not apply */
	W_NUMBER,
	W_STRING,
	W_BOOL,
	W_SCALAR,					/* string, number or boolean */
	W_ORDERED					/* number or string */
} Want;

static const char *const want_phrases[] = {
	[W_NONE] = "nothing",
	[W_NUMBER] = "a number",
	[W_STRING] = "a string",
	[W_BOOL] = "true or false",
	[W_SCALAR] = "a string, number or boolean",
	[W_ORDERED] = "a number or a string",
};

/* Whether an operator takes an array of operands. */
static int
op_takes_array(Op op)
{
	return op == OP_IN || op == OP_NOT_IN;
}

/* What the operand of op must be for a fact of a type, W_NONE if op does not apply. */
static Want
operand_want(FactType type, Op op)
{
	if (op == OP_EXISTS)
		return W_BOOL;
	switch (type)
	{
		case FT_NUMBER:
			return op == OP_CONTAINS ? W_NONE : W_NUMBER;
		case FT_TEXT:
			return op == OP_EQ || op == OP_NE || op_takes_array(op) ? W_STRING : W_NONE;
		case FT_BOOL:
			return op == OP_EQ || op == OP_NE ? W_BOOL : W_NONE;
		case FT_LIST:
			return op == OP_CONTAINS || op == OP_IN ? W_STRING : W_NONE;
		case FT_SCALAR:
			if (op == OP_CONTAINS)
				return W_NONE;
			if (op == OP_LT || op == OP_LTE || op == OP_GT || op == OP_GTE)
				return W_ORDERED;
			return W_SCALAR;
	}
	return W_NONE;
}

static int
value_is(const CdpJson *v, Want want)
{
	switch (want)
	{
		case W_NONE:
			return 0;
		case W_NUMBER:
			return v->type == CDP_JSON_NUMBER;
		case W_STRING:
			return v->type == CDP_JSON_STRING;
		case W_BOOL:
			return v->type == CDP_JSON_BOOL;
		case W_SCALAR:
			return v->type == CDP_JSON_NUMBER || v->type == CDP_JSON_STRING ||
				v->type == CDP_JSON_BOOL;
		case W_ORDERED:
			return v->type == CDP_JSON_NUMBER || v->type == CDP_JSON_STRING;
	}
	return 0;
}

/*
 * Compiled rules.
 */

typedef enum RuleKind
{
	R_TRUE,
	R_ALL,
	R_ANY,
	R_NOT,
	R_COND
} RuleKind;

struct CdpRule
{
	RuleKind	kind;
	const char *path;			/* where the node is, from the root name */
	size_t		n;				/* R_ALL, R_ANY: children; R_NOT: 1 */
	CdpRule   **kids;
	FactId		fact;			/* R_COND */
	Op			op;
	const char *key;			/* NULL without a key */
	size_t		key_len;
	const CdpJson *operand;
};

typedef struct Compiler
{
	CdpArena   *a;
	Out			err;
	int			nodes;
} Compiler;

/* Starts an error message about the node at path; returns NULL. */
static CdpRule *
error_at(Compiler *c, const char *path, const char *msg)
{
	out_str(&c->err, path);
	out_str(&c->err, ": ");
	out_str(&c->err, msg);
	return NULL;
}

/* The path of a child: parent + "." + name, and "[index]" when index >= 0. */
static const char *
child_path(Compiler *c, const char *parent, const char *name, long index)
{
	size_t		n = strlen(parent) + strlen(name) + 32;
	char	   *b = arena_alloc(c->a, n);

	if (index >= 0)
		snprintf(b, n, "%s.%s[%ld]", parent, name, index);
	else
		snprintf(b, n, "%s.%s", parent, name);
	return b;
}

static int
key_is(const CdpJson *obj, size_t i, const char *name)
{
	size_t		n = strlen(name);

	return obj->key_lens[i] == n && memcmp(obj->keys[i], name, n) == 0;
}

/* The operator named by member i of a condition, or N_OPS. */
static Op
op_of_key(const CdpJson *obj, size_t i)
{
	int			op;

	for (op = 0; op < N_OPS; op++)
		if (key_is(obj, i, op_names[op]))
			return (Op) op;
	return N_OPS;
}

static CdpRule *
unknown_key(Compiler *c, const char *path, const CdpJson *obj, size_t i)
{
	error_at(c, path, "unknown key ");
	out_quoted(&c->err, obj->keys[i], obj->key_lens[i]);
	return NULL;
}

/* Error: '"<op>" needs <want>, got <what v is>'; index >= 0 names an item. */
static CdpRule *
bad_operand(Compiler *c, const char *path, Op op, long index, const char *want,
			const CdpJson *v)
{
	out_str(&c->err, path);
	out_str(&c->err, ": \"");
	out_str(&c->err, op_names[op]);
	out_str(&c->err, "\"");
	if (index >= 0)
	{
		out_str(&c->err, "[");
		out_size(&c->err, (size_t) index);
		out_str(&c->err, "]");
	}
	out_str(&c->err, " needs ");
	out_str(&c->err, want);
	out_str(&c->err, ", got ");
	out_str(&c->err, type_phrase(v));
	return NULL;
}

static CdpRule *
compile_condition(Compiler *c, CdpRule *r, const CdpJson *obj)
{
	const CdpJson *fact = NULL;
	const CdpJson *key = NULL;
	const CdpJson *operand = NULL;
	const FactDef *def = NULL;
	int			nops = 0;
	Op			op = N_OPS;
	Want		want;
	size_t		i;

	for (i = 0; i < obj->n; i++)
	{
		Op			o = op_of_key(obj, i);

		if (key_is(obj, i, "fact"))
			fact = obj->items[i];
		else if (key_is(obj, i, "key"))
			key = obj->items[i];
		else if (o != N_OPS)
		{
			if (nops++ == 0)
			{
				op = o;
				operand = obj->items[i];
			}
		}
		else
			return unknown_key(c, r->path, obj, i);
	}
	if (fact->type != CDP_JSON_STRING)
	{
		error_at(c, r->path, "\"fact\" needs a string, got ");
		out_str(&c->err, type_phrase(fact));
		return NULL;
	}
	for (i = 0; i < N_FACTS; i++)
		if (strlen(fact_defs[i].name) == fact->len &&
			memcmp(fact_defs[i].name, fact->str, fact->len) == 0)
		{
			def = &fact_defs[i];
			r->fact = (FactId) i;
		}
	if (def == NULL)
	{
		error_at(c, r->path, "unknown fact ");
		out_quoted(&c->err, fact->str, fact->len);
		return NULL;
	}
	if (key != NULL)
	{
		if (def->key == KEY_NONE)
		{
			error_at(c, r->path, "fact \"");
			out_str(&c->err, def->name);
			out_str(&c->err, "\" takes no \"key\"");
			return NULL;
		}
		if (key->type != CDP_JSON_STRING)
		{
			error_at(c, r->path, "\"key\" needs a string, got ");
			out_str(&c->err, type_phrase(key));
			return NULL;
		}
		if (key->len == 0)
			return error_at(c, r->path, "\"key\" is empty");
		if (key->len > CDP_RULE_MAX_KEY_LEN)
			return error_at(c, r->path, "\"key\" is longer than "
							STR(CDP_RULE_MAX_KEY_LEN) " bytes");
		r->key = key->str;
		r->key_len = key->len;
	}
	else if (def->key == KEY_REQUIRED)
	{
		error_at(c, r->path, "fact \"");
		out_str(&c->err, def->name);
		out_str(&c->err, "\" needs a \"key\"");
		return NULL;
	}
	if (nops != 1)
	{
		error_at(c, r->path, "one operator expected, found ");
		out_size(&c->err, (size_t) nops);
		return NULL;
	}
	want = operand_want(def->type, op);
	if (want == W_NONE)
	{
		error_at(c, r->path, "operator \"");
		out_str(&c->err, op_names[op]);
		out_str(&c->err, "\" does not apply to ");
		out_str(&c->err, fact_type_names[def->type]);
		out_str(&c->err, " fact \"");
		out_str(&c->err, def->name);
		out_str(&c->err, "\"");
		return NULL;
	}
	if (op_takes_array(op))
	{
		if (operand->type != CDP_JSON_ARRAY || operand->n == 0)
			return bad_operand(c, r->path, op, -1, "a non-empty array", operand);
		if (operand->n > CDP_RULE_MAX_IN)
		{
			error_at(c, r->path, "\"");
			out_str(&c->err, op_names[op]);
			out_str(&c->err, "\" has more than " STR(CDP_RULE_MAX_IN) " items");
			return NULL;
		}
		for (i = 0; i < operand->n; i++)
			if (!value_is(operand->items[i], want))
				return bad_operand(c, r->path, op, (long) i, want_phrases[want],
								   operand->items[i]);
	}
	else if (!value_is(operand, want))
		return bad_operand(c, r->path, op, -1, want_phrases[want], operand);
	r->kind = R_COND;
	r->op = op;
	r->operand = operand;
	return r;
}

static CdpRule *
compile_node(Compiler *c, const CdpJson *v, const char *path, int depth)
{
	CdpRule    *r;
	static const char *const forms[] = {"all", "any", "not", "fact"};
	int			form = -1;
	int			nforms = 0;
	int			f;
	size_t		i;
	size_t		k = 0;

	if (depth > CDP_RULE_MAX_DEPTH)
		return error_at(c, path, "rules nest deeper than "
						STR(CDP_RULE_MAX_DEPTH) " levels");
	if (++c->nodes > CDP_RULE_MAX_NODES)
		return error_at(c, path, "more than " STR(CDP_RULE_MAX_NODES) " rule nodes");
	if (v->type != CDP_JSON_OBJECT)
	{
		error_at(c, path, depth == 1 ?
				 "a rule must be an object, null or true, got " :
				 "a rule node must be an object, got ");
		out_str(&c->err, type_phrase(v));
		return NULL;
	}
	for (i = 0; i < v->n; i++)
		for (f = 0; f < 4; f++)
			if (key_is(v, i, forms[f]))
			{
				nforms++;
				form = f;
				k = i;
			}
	if (nforms == 0)
		return error_at(c, path,
						"a rule node needs one of \"all\", \"any\", \"not\" or \"fact\"");
	if (nforms > 1)
		return error_at(c, path,
						"a rule node takes only one of \"all\", \"any\", \"not\" or \"fact\"");

	r = arena_alloc(c->a, sizeof(CdpRule));
	memset(r, 0, sizeof(CdpRule));
	r->path = path;
	if (form == 3)
		return compile_condition(c, r, v);

	for (i = 0; i < v->n; i++)
		if (i != k)
			return unknown_key(c, path, v, i);
	v = v->items[k];
	if (form == 2)
	{
		r->kind = R_NOT;
		r->n = 1;
		r->kids = arena_alloc(c->a, sizeof(CdpRule *));
		r->kids[0] = compile_node(c, v, child_path(c, path, "not", -1), depth + 1);
		return r->kids[0] != NULL ? r : NULL;
	}
	r->kind = form == 0 ? R_ALL : R_ANY;
	if (v->type != CDP_JSON_ARRAY)
	{
		error_at(c, path, form == 0 ? "\"all\" needs an array, got " :
				 "\"any\" needs an array, got ");
		out_str(&c->err, type_phrase(v));
		return NULL;
	}
	r->n = v->n;
	if (v->n > 0)
		r->kids = arena_alloc(c->a, v->n * sizeof(CdpRule *));
	for (i = 0; i < v->n; i++)
	{
		r->kids[i] = compile_node(c, v->items[i],
								  child_path(c, path, forms[form], (long) i),
								  depth + 1);
		if (r->kids[i] == NULL)
			return NULL;
	}
	return r;
}

CdpRule *
cdp_rule_compile(CdpArena *a, const char *json, size_t len, const char *root,
				 char *err, size_t errlen)
{
	Compiler	c;
	Parser		p;
	CdpJson    *doc;
	CdpRule    *r;
	char	   *path;
	size_t		n;

	if (root == NULL)
		root = "";
	n = strlen(root);
	path = arena_alloc(a, n + 1);
	memcpy(path, root, n + 1);

	c.a = a;
	c.nodes = 0;
	out_init(&c.err, err, errlen);

	doc = parse_document(&p, a, json, len);
	if (doc == NULL)
	{
		out_str(&c.err, path);
		out_str(&c.err, ": ");
		out_parse_error(&c.err, &p);
		out_end(&c.err);
		return NULL;
	}
	if (doc->type == CDP_JSON_NULL || (doc->type == CDP_JSON_BOOL && doc->boolean))
	{
		r = arena_alloc(a, sizeof(CdpRule));
		memset(r, 0, sizeof(CdpRule));
		r->kind = R_TRUE;
		r->path = path;
		return r;
	}
	r = compile_node(&c, doc, path, 1);
	out_end(&c.err);
	return r;
}

/*
 * Evaluation.
 */

/*
 * The value of the fact of a condition in the facts document, or NULL when
 * it is missing (absent, null or not of the type of the fact).  Made-up
 * values (a count of 0, an empty list, whether a break is open) are built
 * in *tmp.
 */
static const CdpJson *
fact_value(const CdpRule *r, const CdpJson *facts, CdpJson *tmp)
{
	const FactDef *def = &fact_defs[r->fact];
	const CdpJson *v = NULL;
	const CdpJson *box;

	memset(tmp, 0, sizeof(CdpJson));
	switch (r->fact)
	{
		case F_DAYS_SINCE_LAST_CONTACT:
			if (r->key != NULL)
				v = cdp_json_getn(cdp_json_get(facts, "days_since_last_contact_by_channel"),
								  r->key, r->key_len);
			else
				v = cdp_json_get(facts, def->name);
			break;
		case F_EVENTS:
		case F_INTEREST:
			box = cdp_json_get(facts, def->name);
			v = cdp_json_getn(box, r->key, r->key_len);
			if ((box == NULL || box->type == CDP_JSON_NULL ||
				 (box->type == CDP_JSON_OBJECT && v == NULL)) ||
				(v != NULL && v->type == CDP_JSON_NULL))
			{
				tmp->type = CDP_JSON_NUMBER;
				tmp->number = 0;
				v = tmp;
			}
			break;
		case F_TRAIT:
			v = cdp_json_getn(cdp_json_get(facts, "traits"), r->key, r->key_len);
			break;
		case F_OPEN_BREAK:
			tmp->type = CDP_JSON_BOOL;
			tmp->boolean = cdp_json_getn(cdp_json_get(facts, "open_breaks"),
										 r->key, r->key_len) != NULL;
			v = tmp;
			break;
		case F_BREAK_PRODUCTS:
			v = cdp_json_getn(cdp_json_get(facts, "open_breaks"), r->key, r->key_len);
			if (v == NULL || v->type == CDP_JSON_NULL)
			{
				tmp->type = CDP_JSON_ARRAY;
				v = tmp;
			}
			break;
		case F_CONSENT:
			v = cdp_json_getn(cdp_json_get(facts, "consent"), r->key, r->key_len);
			break;
		case F_EVENT:
			v = cdp_json_getn(cdp_json_get(facts, "event"), r->key, r->key_len);
			break;
		default:
			v = cdp_json_get(facts, def->name);
			break;
	}
	if (v == NULL)
		return NULL;
	switch (def->type)
	{
		case FT_NUMBER:
			return v->type == CDP_JSON_NUMBER ? v : NULL;
		case FT_TEXT:
			return v->type == CDP_JSON_STRING ? v : NULL;
		case FT_BOOL:
			return v->type == CDP_JSON_BOOL ? v : NULL;
		case FT_LIST:
			return v->type == CDP_JSON_ARRAY ? v : NULL;
		case FT_SCALAR:
			return value_is(v, W_SCALAR) ? v : NULL;
	}
	return NULL;
}

/* Whether two scalars are of the same type and equal. */
static int
scalar_eq(const CdpJson *a, const CdpJson *b)
{
	if (a->type != b->type)
		return 0;
	switch (a->type)
	{
		case CDP_JSON_NUMBER:
			return a->number == b->number;
		case CDP_JSON_STRING:
			return a->len == b->len && (a->len == 0 || memcmp(a->str, b->str, a->len) == 0);
		case CDP_JSON_BOOL:
			return a->boolean == b->boolean;
		default:
			return 0;
	}
}

/* Compares two numbers or two strings into *cmp; 0 when they cannot be compared. */
static int
scalar_cmp(const CdpJson *a, const CdpJson *b, int *cmp)
{
	if (a->type == CDP_JSON_NUMBER && b->type == CDP_JSON_NUMBER)
	{
		*cmp = a->number < b->number ? -1 : a->number > b->number;
		return 1;
	}
	if (a->type == CDP_JSON_STRING && b->type == CDP_JSON_STRING)
	{
		size_t		n = a->len < b->len ? a->len : b->len;
		int			c = n > 0 ? memcmp(a->str, b->str, n) : 0;

		if (c == 0)
			c = a->len < b->len ? -1 : a->len > b->len;
		*cmp = c < 0 ? -1 : c > 0;
		return 1;
	}
	return 0;
}

/* Whether a value equals an item of an array. */
static int
in_array(const CdpJson *v, const CdpJson *arr)
{
	size_t		i;

	for (i = 0; i < arr->n; i++)
		if (scalar_eq(v, arr->items[i]))
			return 1;
	return 0;
}

/* Whether a condition holds for the value of its fact (NULL: missing). */
static int
condition_holds(const CdpRule *r, const CdpJson *v)
{
	const CdpJson *x = r->operand;
	int			list = fact_defs[r->fact].type == FT_LIST;
	int			cmp;
	size_t		i;

	if (r->op == OP_EXISTS)
		return (v != NULL && !(list && v->n == 0)) == x->boolean;
	if (v == NULL)
		return 0;
	switch (r->op)
	{
		case OP_EQ:
			return scalar_eq(v, x);
		case OP_NE:
			return v->type == x->type && !scalar_eq(v, x);
		case OP_LT:
			return scalar_cmp(v, x, &cmp) && cmp < 0;
		case OP_LTE:
			return scalar_cmp(v, x, &cmp) && cmp <= 0;
		case OP_GT:
			return scalar_cmp(v, x, &cmp) && cmp > 0;
		case OP_GTE:
			return scalar_cmp(v, x, &cmp) && cmp >= 0;
		case OP_IN:
			if (!list)
				return in_array(v, x);
			for (i = 0; i < v->n; i++)
				if (in_array(v->items[i], x))
					return 1;
			return 0;
		case OP_NOT_IN:
			return !in_array(v, x);
		case OP_CONTAINS:
			return in_array(x, v);
		default:
			return 0;
	}
}

static int
holds(const CdpRule *r, const CdpJson *facts)
{
	CdpJson		tmp;
	size_t		i;

	switch (r->kind)
	{
		case R_TRUE:
			return 1;
		case R_ALL:
			for (i = 0; i < r->n; i++)
				if (!holds(r->kids[i], facts))
					return 0;
			return 1;
		case R_ANY:
			for (i = 0; i < r->n; i++)
				if (holds(r->kids[i], facts))
					return 1;
			return 0;
		case R_NOT:
			return !holds(r->kids[0], facts);
		case R_COND:
			return condition_holds(r, fact_value(r, facts, &tmp));
	}
	return 0;
}

/* Writes why a node returned held (which it did). */
static void
explain(Out *o, const CdpRule *r, const CdpJson *facts, int held)
{
	CdpJson		tmp;
	const CdpJson *v;
	size_t		i;

	switch (r->kind)
	{
		case R_TRUE:
			out_str(o, r->path);
			out_str(o, ": always holds");
			return;
		case R_ALL:
		case R_ANY:
			for (i = 0; i < r->n; i++)
				if (holds(r->kids[i], facts) == held)
					break;
			if ((r->kind == R_ALL) != held)
			{
				/* A failed child of "all", or a holding child of "any". */
				explain(o, r->kids[i], facts, held);
				return;
			}
			out_str(o, r->path);
			out_str(o, r->kind == R_ALL ? ".all: all of " : ".any: none of ");
			out_size(o, r->n);
			out_str(o, " held");
			if (r->kind == R_ANY && r->n > 0)
			{
				out_str(o, " (first: ");
				explain(o, r->kids[0], facts, 0);
				out_str(o, ")");
			}
			return;
		case R_NOT:
			explain(o, r->kids[0], facts, !held);
			return;
		case R_COND:
			break;
	}
	v = fact_value(r, facts, &tmp);
	out_str(o, r->path);
	out_str(o, ": ");
	out_str(o, fact_defs[r->fact].name);
	if (r->key != NULL)
	{
		out_str(o, " ");
		out_quoted(o, r->key, r->key_len);
	}
	out_str(o, held ? " holds " : " is ");
	if (!held)
	{
		if (v != NULL)
			out_value(o, v, 0);
		else
			out_str(o, "missing");
		out_str(o, ", needs ");
	}
	out_str(o, op_names[r->op]);
	out_str(o, " ");
	out_value(o, r->operand, 0);
	if (held)
	{
		out_str(o, " (is ");
		if (v != NULL)
			out_value(o, v, 0);
		else
			out_str(o, "missing");
		out_str(o, ")");
	}
}

int
cdp_rule_eval(const CdpRule *r, const CdpJson *facts, char *why, size_t whylen)
{
	Out			o;

	out_init(&o, why, whylen);
	if (r == NULL)
	{
		out_str(&o, "no compiled rule");
		out_end(&o);
		return 0;
	}
	if (holds(r, facts))
		return 1;
	explain(&o, r, facts, 0);
	out_end(&o);
	return 0;
}
