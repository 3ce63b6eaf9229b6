/*
 * offer_rules.h
 *	  Eligibility rules of offers: a small declarative JSON language,
 *	  compiled once and evaluated against the JSON "facts" document of one
 *	  customer, independent of PostgreSQL.
 *
 * A rule node is a JSON object of exactly one of these forms:
 *
 *	{"all": [node, ...]}	holds when every child holds (an empty array holds)
 *	{"any": [node, ...]}	holds when one child holds (an empty array does not)
 *	{"not": node}			holds when its child does not
 *	{"fact": NAME, "key": STRING, OP: OPERAND}	a condition on one fact
 *
 * and the whole rule may also be JSON null or true (it then always holds).
 * The facts, their types and where they are read in the facts document are
 * listed in offer_rules.c.  A missing fact (absent, JSON null or of another
 * type than expected) makes every operator false except "exists": false,
 * as SQL's NULL does; "not" inverts what its child returns.
 *
 * Everything is allocated from a caller-provided arena: no malloc, no
 * global state, so that the functions are thread-safe.  Numbers are read
 * and written with strtod and snprintf, which assume LC_NUMERIC "C" (as it
 * always is in a PostgreSQL backend).
 */
#ifndef CDP_OFFER_RULES_H
#define CDP_OFFER_RULES_H

#include <stddef.h>

/* Nesting limit of JSON documents (arrays and objects). */
#define CDP_JSON_MAX_DEPTH			64

/* Limits on rules: nesting and number of rule nodes, items of "in", keys. */
#define CDP_RULE_MAX_DEPTH			32
#define CDP_RULE_MAX_NODES			1000
#define CDP_RULE_MAX_IN				1000
#define CDP_RULE_MAX_KEY_LEN		200

/*
 * Where memory comes from: alloc(ctx, size) returns memory aligned for any
 * type and never returns NULL (the caller's allocator aborts or longjmps on
 * failure); the caller frees everything at once.
 */
typedef struct CdpArena
{
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *ctx;
} CdpArena;

typedef enum CdpJsonType
{
	CDP_JSON_NULL = 0,
	CDP_JSON_BOOL,
	CDP_JSON_NUMBER,
	CDP_JSON_STRING,
	CDP_JSON_ARRAY,
	CDP_JSON_OBJECT
} CdpJsonType;

/* A parsed JSON value; only the fields of its type are meaningful. */
typedef struct CdpJson CdpJson;
struct CdpJson
{
	CdpJsonType type;
	int			boolean;		/* CDP_JSON_BOOL: 0 or 1 */
	double		number;			/* CDP_JSON_NUMBER: always finite */
	const char *str;			/* CDP_JSON_STRING: len bytes of UTF-8, */
	size_t		len;			/* NUL-terminated but may contain NUL */
	size_t		n;				/* CDP_JSON_ARRAY, CDP_JSON_OBJECT: items */
	CdpJson   **items;			/* elements, or member values in order */
	const char **keys;			/* CDP_JSON_OBJECT: member names (as str) */
	size_t	   *key_lens;		/* and their lengths */
};

/*
 * Parses len bytes of strict RFC 8259 JSON (not necessarily NUL-terminated)
 * into a value allocated in the arena.  Duplicate object keys, nesting
 * deeper than CDP_JSON_MAX_DEPTH, numbers out of the range of a double and
 * lone surrogates are rejected.  On error returns NULL and writes to err
 * (errlen bytes at most, NUL-terminated; errlen may be 0) a message such as
 * "invalid JSON at byte 12: expected ':'", the byte offset counted from 0.
 */
extern CdpJson *cdp_json_parse(CdpArena *a, const char *s, size_t len,
							   char *err, size_t errlen);

/* Member key (NUL-terminated) of an object, or NULL (also when obj is not an object). */
extern const CdpJson *cdp_json_get(const CdpJson *obj, const char *key);

/* Member of an object whose name is the len bytes at key, or NULL. */
extern const CdpJson *cdp_json_getn(const CdpJson *obj, const char *key, size_t len);

/* A compiled rule, allocated in the arena it was compiled in. */
typedef struct CdpRule CdpRule;

/*
 * Compiles the rule written as len bytes of JSON.  root names the rule in
 * messages ("eligibility"): error paths and reasons start with it.  On
 * error returns NULL and writes a message naming the path of the fault to
 * err, e.g. 'eligibility.all[2]: unknown fact "foo"'.
 */
extern CdpRule *cdp_rule_compile(CdpArena *a, const char *json, size_t len,
								 const char *root, char *err, size_t errlen);

/*
 * Evaluates a rule against the facts of one customer (any JSON value, NULL
 * included; what is not where it is expected counts as missing).  Returns
 * 1 when the rule holds, why then empty; 0 when it does not, why then
 * saying which condition failed and with what value, e.g.
 * 'eligibility.all[0]: clv is 42.5, needs gte 100'.  why is truncated to
 * whylen bytes (ending with "..." when cut) and always NUL-terminated;
 * whylen may be 0 (nothing is written).
 */
extern int	cdp_rule_eval(const CdpRule *r, const CdpJson *facts,
						  char *why, size_t whylen);

#endif							/* CDP_OFFER_RULES_H */
