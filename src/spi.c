/*
 * spi.c
 *	  The checked SPI helpers that the glue shares: connect (with the
 *	  search_path pinned) and finish, run a statement with arguments and
 *	  check its result code, and build the array arguments that set-based
 *	  statements take; and whether this transaction holds one of cdp's
 *	  advisory locks.
 */
#include "cdp.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"

/*
 * The search_path of every statement cdp runs through SPI: a function or
 * operator that the caller (or a role setting, for the worker) put earlier
 * on the path can never stand in for a built-in one (lower(), =, ||...).
 * cdp's own objects are always written cdp.x; pg_temp last, so that no
 * temporary object is found either.
 */
#define CDP_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * The GUC nest levels of the open connections, innermost last.  A level
 * left here by an error is stale: the abort of its (sub)transaction
 * unwound the level, so the next one handed out is not above it.
 */
#define MAX_PINS 64
static int	pins[MAX_PINS];
static int	n_pins = 0;

/*
 * Connects to SPI or fails, and pins the search_path to CDP_SEARCH_PATH
 * until cdp_spi_finish, as a function's SET search_path clause does (a
 * GUC nest level of its own: an error unwinds it with its transaction or
 * subtransaction).
 */
void
cdp_spi_connect(void)
{
	int			ret = SPI_connect();
	int			level;

	if (ret != SPI_OK_CONNECT)
		elog(ERROR, "cdp could not connect to SPI: %s", SPI_result_code_string(ret));
	level = NewGUCNestLevel();
	while (n_pins > 0 && pins[n_pins - 1] >= level)
		n_pins--;
	if (n_pins == MAX_PINS)
		elog(ERROR, "cdp: SPI connections nested more than %d deep", MAX_PINS);
	pins[n_pins++] = level;
	/* already pinned (a nested connection): nothing to save */
	if (namespace_search_path == NULL || strcmp(namespace_search_path, CDP_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", CDP_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/* Finishes the innermost connection and restores the caller's search_path. */
void
cdp_spi_finish(void)
{
	int			ret;

	if (n_pins == 0)
		elog(ERROR, "cdp_spi_finish without cdp_spi_connect");
	ret = SPI_finish();
	if (ret != SPI_OK_FINISH)
		elog(ERROR, "cdp could not finish SPI: %s", SPI_result_code_string(ret));
	AtEOXact_GUC(true, pins[--n_pins]);
}

/*
 * After a statement started at t0 returned ret: logs its time at DEBUG2,
 * checks its result code; returns the number of rows.
 */
static uint64
statement_done(const char *sql, instr_time t0, int ret, int expect)
{
	instr_time	t1;

	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	elog(DEBUG2, "cdp: %.1f ms, %lu rows: %.60s", INSTR_TIME_GET_MILLISEC(t1),
		 (unsigned long) SPI_processed, sql);
	if (ret != expect)
		elog(ERROR, "cdp statement failed (%s, expected %s): %.200s", SPI_result_code_string(ret),
			 SPI_result_code_string(expect), sql);
	return SPI_processed;
}

/*
 * Runs a statement with arguments (nulls as SPI_execute_with_args takes
 * them, or NULL for none), read-only or not; see statement_done.
 */
static uint64
spi_execute(const char *sql, int nargs, const Oid *types, Datum *values, const char *nulls,
			bool read_only, int expect)
{
	instr_time	t0;

	INSTR_TIME_SET_CURRENT(t0);
	return statement_done(sql, t0,
						  SPI_execute_with_args(sql, nargs, (Oid *) types, values, nulls, read_only, 0),
						  expect);
}

/* Runs a statement that may write; see spi_execute. */
uint64
cdp_spi_exec(const char *sql, int nargs, const Oid *types, Datum *values, const char *nulls,
			 int expect)
{
	return spi_execute(sql, nargs, types, values, nulls, false, expect);
}

/*
 * Runs a statement with arguments (no NULLs) from a plan prepared once per
 * backend and kept (sql must be a string constant: its address is the
 * key), for statements run often with little work each, whose planning
 * would cost more than running them.  Checks the result code; returns the
 * number of rows.
 */
uint64
cdp_spi_run_kept(const char *sql, int nargs, const Oid *types, Datum *values, int expect)
{
	static struct
	{
		const char *sql;
		SPIPlanPtr	plan;
	}			kept[16];
	static int	n_kept = 0;
	SPIPlanPtr	plan = NULL;
	int			i;
	instr_time	t0;

	for (i = 0; i < n_kept && plan == NULL; i++)
		if (kept[i].sql == sql)
			plan = kept[i].plan;
	if (plan == NULL)
	{
		plan = SPI_prepare(sql, nargs, (Oid *) types);
		if (plan == NULL)
			elog(ERROR, "cdp could not prepare a statement (%s): %.200s",
				 SPI_result_code_string(SPI_result), sql);
		if (n_kept < lengthof(kept))
		{
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "cdp could not keep a plan");
			kept[n_kept].sql = sql;
			kept[n_kept++].plan = plan;
		}
	}
	INSTR_TIME_SET_CURRENT(t0);
	return statement_done(sql, t0, SPI_execute_plan(plan, values, NULL, false, 0), expect);
}

/* Runs a statement with arguments (no NULLs); see spi_execute. */
uint64
cdp_spi_run(const char *sql, int nargs, const Oid *types, Datum *values, int expect)
{
	return spi_execute(sql, nargs, types, values, NULL, false, expect);
}

/*
 * Runs a query read-only (no command counter increment: callable from
 * stable and parallel-safe functions); returns the number of rows.
 */
uint64
cdp_spi_read(const char *sql, int nargs, const Oid *types, Datum *values, const char *nulls)
{
	return spi_execute(sql, nargs, types, values, nulls, true, SPI_OK_SELECT);
}

/* Opens a cursor on a query with arguments (no NULLs), or fails. */
Portal
cdp_spi_cursor(const char *sql, int nargs, const Oid *types, Datum *values)
{
	Portal		cur = SPI_cursor_open_with_args(NULL, sql, nargs, (Oid *) types, values, NULL, false, 0);

	if (cur == NULL)
		elog(ERROR, "cdp could not open a cursor (%s): %.200s", SPI_result_code_string(SPI_result), sql);
	return cur;
}

/* Column col (from 1) of row r of the last result as int64; 0 for NULL. */
int64
cdp_spi_int64(uint64 r, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* An array datum of 64-bit values: bigint[] or timestamptz[] (type). */
Datum
cdp_int64_array(const int64 *v, int n, Oid type)
{
	Datum	   *d = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, type, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A text[] datum from C strings (NULL entries are NULLs). */
Datum
cdp_text_array(char **v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	bool	   *nulls = palloc(sizeof(bool) * (n > 0 ? n : 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = v[i] == NULL;
		d[i] = v[i] ? CStringGetTextDatum(v[i]) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Whether this transaction holds the advisory lock (key1, key2) exclusively. */
bool
cdp_advisory_lock_held(int32 key1, int32 key2)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) key1, (uint32) key2, 2);
	return LockHeldByMe(&tag, ExclusiveLock);
}
