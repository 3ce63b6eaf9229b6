/*
 * cdp.h
 *	  Declarations shared by the PostgreSQL glue files of the cdp extension.
 */
#ifndef CDP_H
#define CDP_H

#include "postgres.h"

/* Settings (defined in cdp.c). */
extern int	cdp_max_clock_skew;		/* seconds an event may lie in the future */

#endif							/* CDP_H */
