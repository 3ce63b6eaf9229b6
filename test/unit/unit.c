/*
 * unit.c
 *	  Runs the cases of one unit-test binary (see unit.h).
 */
#include "unit.h"

int			unit_failures = 0;
int			unit_skipped = 0;

int
main(void)
{
	int			passed = 0;
	int			failed = 0;
	int			skipped = 0;
	const unit_case *c;

	for (c = unit_tests; c->name != NULL; c++)
	{
		unit_failures = 0;
		unit_skipped = 0;
		c->fn();
		if (unit_failures == 0 && unit_skipped)
		{
			skipped++;
			printf("ok - %s: %s # SKIP\n", unit_suite, c->name);
		}
		else if (unit_failures == 0)
		{
			passed++;
			printf("ok - %s: %s\n", unit_suite, c->name);
		}
		else
		{
			failed++;
			printf("not ok - %s: %s\n", unit_suite, c->name);
		}
	}
	if (skipped > 0)
		printf("%s: %d passed, %d failed, %d skipped\n", unit_suite, passed, failed, skipped);
	else
		printf("%s: %d passed, %d failed\n", unit_suite, passed, failed);
	return failed == 0 ? 0 : 1;
}
