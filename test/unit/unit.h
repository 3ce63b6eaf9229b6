/*
 * unit.h
 *	  A minimal harness for the C unit tests of src/core.
 *
 * Each test file defines its cases with UNIT_TEST(name) and lists them in
 * unit_tests[]; unit.c runs them and prints one line per case, then
 * "<file>: N passed, N failed", followed by ", N skipped" when cases called
 * UNIT_SKIP (their data is absent).  A failed CHECK reports file:line and
 * the expression, and the binary exits non-zero.
 */
#ifndef CDP_UNIT_H
#define CDP_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*unit_fn) (void);
typedef struct unit_case
{
	const char *name;
	unit_fn		fn;
} unit_case;

extern int	unit_failures;		/* failed checks in the current case */
extern int	unit_skipped;		/* the current case skipped its checks */
extern const unit_case unit_tests[];
extern const char *unit_suite;

#define UNIT_TEST(name) static void name(void)
#define UNIT_CASE(name) {#name, name}
#define UNIT_END {NULL, NULL}

/* Marks the current case as skipped, saying why; the case then returns. */
#define UNIT_SKIP(...) \
	do { \
		printf("  skipped: "); \
		printf(__VA_ARGS__); \
		printf("\n"); \
		unit_skipped = 1; \
	} while (0)

#define CHECK(expr) \
	do { \
		if (!(expr)) { \
			fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
			unit_failures++; \
		} \
	} while (0)

#define CHECK_EQ_INT(a, b) \
	do { \
		long long a_ = (long long) (a), b_ = (long long) (b); \
		if (a_ != b_) { \
			fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
			unit_failures++; \
		} \
	} while (0)

#define CHECK_EQ_STR(a, b) \
	do { \
		const char *a_ = (a), *b_ = (b); \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) { \
			fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
					a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
			unit_failures++; \
		} \
	} while (0)

#endif
