/*
 * cdp.h
 *	  Declarations shared by the PostgreSQL glue files of the cdp extension.
 */
#ifndef CDP_H
#define CDP_H

#include "postgres.h"

/* Settings (defined in cdp.c). */
extern char *cdp_default_country;	/* ISO 3166 alpha-2 for national phone numbers */
extern double cdp_max_amount;		/* largest absolute amount an event may carry */
extern int	cdp_max_clock_skew;		/* seconds an event may lie in the future */
extern int	cdp_session_timeout;	/* seconds of inactivity that end a session */
extern bool cdp_stitch_on_ingest;	/* stitch identities as events are stored */
extern bool cdp_refuse_erased;		/* quarantine events carrying an erased identifier */
extern int	cdp_unknown_event_types;	/* CDP_UNKNOWN_TYPES_* */
extern bool cdp_worker_enabled;		/* the background worker does its work */
extern char *cdp_worker_database;	/* the database it works in */
extern int	cdp_worker_naptime;		/* ms it sleeps when not woken */
extern int	cdp_worker_batch_size;	/* events per profile store unit */
extern int	cdp_worker_stitch_batch;	/* events per stitching unit */
extern int	cdp_stitch_defer_rows;	/* a statement this large is stitched by the worker */

/* The background worker (worker.c). */
extern void cdp_worker_register(void);
extern void cdp_worker_wake_at_commit(void);
extern bool cdp_worker_serves_here(void);
extern bool cdp_worker_is_me(void);
extern int64 cdp_worker_errors(void);
extern void cdp_worker_want_stitching(void);

/* What happens to an event whose type is not in cdp.event_types. */
#define CDP_UNKNOWN_TYPES_ACCEPT		0
#define CDP_UNKNOWN_TYPES_WARN			1
#define CDP_UNKNOWN_TYPES_QUARANTINE	2

/*
 * Checked SPI helpers, array arguments, advisory locks held (spi.c).  Every
 * cdp_spi_connect is paired with a cdp_spi_finish: between them the
 * search_path is pg_catalog, pg_temp.
 */
extern void cdp_spi_connect(void);
extern void cdp_spi_finish(void);
extern uint64 cdp_spi_exec(const char *sql, int nargs, const Oid *types, Datum *values,
						   const char *nulls, int expect);
extern uint64 cdp_spi_run(const char *sql, int nargs, const Oid *types, Datum *values, int expect);
extern uint64 cdp_spi_run_kept(const char *sql, int nargs, const Oid *types, Datum *values,
							   int expect);
extern uint64 cdp_spi_read(const char *sql, int nargs, const Oid *types, Datum *values,
						   const char *nulls);
extern struct PortalData *cdp_spi_cursor(const char *sql, int nargs, const Oid *types, Datum *values);
extern int64 cdp_spi_int64(uint64 r, int col);
extern Datum cdp_int64_array(const int64 *v, int n, Oid type);
extern Datum cdp_text_array(char **v, int n);
extern bool cdp_advisory_lock_held(int32 key1, int32 key2);

#endif							/* CDP_H */
