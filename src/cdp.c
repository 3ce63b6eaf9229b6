/*
 * cdp.c
 *	  Entry point of the cdp extension: module magic and settings.
 *
 * The library may be loaded on demand or through shared_preload_libraries
 * (which later work needs for its background worker).  All settings are
 * defined here, in alphabetical order.
 */
#include "cdp.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			cdp_max_clock_skew = 86400;

void		_PG_init(void);

/* Defines the settings of the cdp.* namespace. */
void
_PG_init(void)
{
	DefineCustomIntVariable("cdp.max_clock_skew",
							gettext_noop("How far in the future of its arrival an event may have occurred."),
							gettext_noop("Events further in the future are rejected as future_occurred_at."),
							&cdp_max_clock_skew,
							86400, 0, 366 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("cdp");
}
