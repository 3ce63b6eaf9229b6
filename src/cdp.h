/*
 * cdp.h
 *	  Declarations shared by the PostgreSQL glue files of the cdp extension.
 */
#ifndef CDP_H
#define CDP_H

#include "postgres.h"

/* Settings (defined in cdp.c). */
extern char *cdp_default_country;	/* ISO 3166 alpha-2 for national phone numbers */
extern int	cdp_max_clock_skew;		/* seconds an event may lie in the future */
extern int	cdp_session_timeout;	/* seconds of inactivity that end a session */
extern bool cdp_stitch_on_ingest;	/* stitch identities as events are stored */

#endif							/* CDP_H */
