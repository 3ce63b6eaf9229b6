/*
 * worker.c
 *	  The cdp background worker: stitches the bulk loads of one database
 *	  after they commit, and keeps its profile store and journeys current.
 *
 * Registered from _PG_init when cdp is in shared_preload_libraries (on
 * demand there is no worker, and cdp works as before: loads stitch their
 * own events, the store advances when cdp.sync or cdp.profile runs,
 * journeys when cdp.detect_journey_breaks runs).  It connects to
 * cdp.worker_database and loops: wait on its latch (set when a transaction
 * that stitched or queued events commits, or after cdp.worker_naptime),
 * then run units of work, each in a transaction of its own:
 *	- stitching: the oldest rows of cdp.stitch_queue, at most
 *	  cdp.worker_stitch_batch events per unit (stitch_queue.c), units back
 *	  to back for up to STITCH_SLICE_MS while rows remain;
 *	- the profile store folds in the next batches (at most
 *	  cdp.worker_batch_size events);
 *	- the incremental journey detection at now(): the journeys of the
 *	  profiles that the new batches touched, and the due transitions (a cart
 *	  left longer than abandon_after becomes an open break within a naptime
 *	  of its time).
 * A backlog is taken round after round without waiting.  Each unit commits
 * its progress (queue rows deleted, the store's or detection's marker) with
 * its work, so it is done exactly once, whatever stops the worker.
 *
 * Errors: a failing unit is logged with its context and recorded in shared
 * memory (cdp.worker_status), then the worker exits and the postmaster
 * starts it again after WORKER_RESTART seconds; nothing stops it for good.
 * While cdp.worker_enabled is off, or the extension is not installed in its
 * database, it waits and says so in its status.
 *
 * Shared state: one WorkerShared struct, under a spinlock: what
 * cdp.worker_status shows, and the worker's proc number, for the wake-up.
 */
#include "cdp.h"
#include "journey.h"
#include "profile_store.h"
#include "stitch_queue.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "catalog/namespace.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define WORKER_RESTART 10		/* seconds before the postmaster restarts it */
#define STATE_LEN 128

PGDLLEXPORT void cdp_worker_main(Datum arg);
PG_FUNCTION_INFO_V1(cdp_worker_state);

/* What cdp.worker_status shows, and where to wake the worker. */
typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0 when not running */
	int			procno;			/* its PGPROC, for the wake-up */
	Oid			database;		/* the database it works in, once connected */
	char		state[STATE_LEN];	/* what it is doing or waiting for */
	int64		units;			/* units of work done since the server started */
	int64		events;			/* stitched events those units took in */
	int64		stitched;		/* events of bulk loads they stitched */
	double		stitch_ms;		/* time those stitching units took */
	TimestampTz stitch_wanted_at;	/* a session waits for the queue (wait_for_worker) */
	TimestampTz last_unit_at;	/* when the last one committed */
	double		last_unit_ms;
	int64		errors;
	TimestampTz last_error_at;
	char		last_error[256];
} WorkerShared;

static WorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;

bool		cdp_worker_enabled = false;
char	   *cdp_worker_database = NULL;
int			cdp_worker_naptime = 1000;
int			cdp_worker_batch_size = 100000;
int			cdp_worker_stitch_batch = 5000;

/* Stitching units run back to back for at most this long before the store's. */
#define STITCH_SLICE_MS 250

/*
 * The store's unit runs whenever the worker is woken, the journeys' (whose
 * fixed cost is larger) at most this often: a steady stream of small
 * commits reaches the store within one short unit, and the journeys within
 * this time; journeys_wait_ms says when a skipped journeys' unit is due.
 */
#define JOURNEYS_EVERY_MS 500
static instr_time last_journeys;
static long journeys_wait_ms = -1;

/* This process is the worker. */
static bool am_worker = false;

/*
 * The next round summarizes new events first: at start (there may be a
 * backlog), after stitching bulk loads, and after a store unit that took a
 * full cdp.worker_batch_size (a backlog); not after the units of a steady
 * stream of small transactions.
 */
static bool prepare_due = true;

/* The units of work, each in a transaction of its own. */
typedef enum Unit
{
	UNIT_STITCH,				/* bulk loads' events (stitch_queue.c) */
	UNIT_PREPARE,				/* BRIN summaries and statistics of new events */
	UNIT_STORE,					/* the profile store folds in new batches */
	UNIT_JOURNEYS,				/* incremental journey detection */
	UNIT_TRIGGERS				/* triggers: moments, due decisions, outbox */
} Unit;

/* When the next waiting moment of a trigger is due (0: none). */
static TimestampTz triggers_due = 0;

/* Asks for the shared state (shmem_request_hook). */
static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

/* Finds or makes the shared state (shmem_startup_hook). */
static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("cdp worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WorkerShared));
		SpinLockInit(&shared->mutex);
		strlcpy(shared->state, "not started", STATE_LEN);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Registers the worker and its shared state; called by _PG_init while
 * shared_preload_libraries are loaded.
 */
void
cdp_worker_register(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = WORKER_RESTART;
	strlcpy(worker.bgw_library_name, "cdp", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cdp_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "cdp worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "cdp worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Says what the worker is doing. */
static void
set_state(const char *state)
{
	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->state, state, STATE_LEN);
	SpinLockRelease(&shared->mutex);
	pgstat_report_activity(STATE_RUNNING, state);
}

/*
 * Sets the worker's latch if it works in this database; with want_stitching,
 * first notes that a session waits for the queue (stitching_wanted).
 */
static void
wake_worker(bool want_stitching)
{
	int			procno = -1;

	SpinLockAcquire(&shared->mutex);
	if (want_stitching)
		shared->stitch_wanted_at = GetCurrentTimestamp();
	if (shared->pid != 0 && shared->database == MyDatabaseId)
		procno = shared->procno;
	SpinLockRelease(&shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* Wakes the worker when this transaction commits (it stitched events). */
static void
wake_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit && shared != NULL)
		wake_worker(false);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/*
 * Whether the worker runs, enabled, in this database: stitching then
 * leaves the profile store to it.
 */
bool
cdp_worker_serves_here(void)
{
	bool		serves;

	if (shared == NULL || !cdp_worker_enabled)
		return false;
	SpinLockAcquire(&shared->mutex);
	serves = shared->pid != 0 && shared->database == MyDatabaseId;
	SpinLockRelease(&shared->mutex);
	return serves;
}

/*
 * Errors the worker has had since the server started: a session waiting
 * for it to stitch the queue stops waiting when this moves.
 */
int64
cdp_worker_errors(void)
{
	int64		errors;

	if (shared == NULL)
		return 0;
	SpinLockAcquire(&shared->mutex);
	errors = shared->errors;
	SpinLockRelease(&shared->mutex);
	return errors;
}

/*
 * A session waits for the worker to stitch the queue: its stitching units
 * go on back to back, past STITCH_SLICE_MS, while sessions keep asking.
 */
void
cdp_worker_want_stitching(void)
{
	if (shared != NULL)
		wake_worker(true);
}

/* Whether a session has asked for stitching in the last 100 ms. */
static bool
stitching_wanted(void)
{
	TimestampTz at;

	SpinLockAcquire(&shared->mutex);
	at = shared->stitch_wanted_at;
	SpinLockRelease(&shared->mutex);
	return !TimestampDifferenceExceeds(at, GetCurrentTimestamp(), 100);
}

/* Whether this process is the worker (it leaves the queue to its units). */
bool
cdp_worker_is_me(void)
{
	return am_worker;
}

/* Called when events are stitched or queued: the worker has new work at commit. */
void
cdp_worker_wake_at_commit(void)
{
	static bool registered = false;

	if (shared == NULL)
		return;					/* not preloaded: no worker */
	if (!registered)
	{
		RegisterXactCallback(wake_callback, NULL);
		registered = true;
	}
	wake_at_commit = true;
}

/* Whether the extension is installed in the worker's database. */
static bool
extension_installed(void)
{
	return cdp_spi_read("SELECT FROM pg_catalog.pg_extension WHERE extname = 'cdp'",
						0, NULL, NULL, NULL) == 1;
}

/*
 * In a unit of its own, after the worker has stitched bulk loads or left
 * a backlog in the store (not every round: it locks every partition),
 * before the units that read new events by their ids: summarizes the page
 * ranges that loads have filled since the last time in the BRIN indexes on
 * event_id (of every partition of cdp.events, and of cdp.event_anchors),
 * and analyzes those tables when their statistics are missing or stale
 * (cdp.analyze_stale).  Until then, a BRIN index returns every page of a
 * fresh load for any range of ids, so each unit after a bulk load would
 * read all of it; and a plan made without statistics can take minutes.
 */
static void
prepare_reads(void)
{
	cdp_spi_run("SELECT pg_catalog.brin_summarize_new_values(i.indexrelid) "
				"FROM pg_catalog.pg_index i "
				"JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
				"JOIN pg_catalog.pg_am m ON m.oid = c.relam AND m.amname = 'brin' "
				"WHERE i.indrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree('cdp.events') p "
				"WHERE p.isleaf UNION ALL SELECT 'cdp.event_anchors'::pg_catalog.regclass)",
				0, NULL, NULL, SPI_OK_SELECT);
	cdp_spi_run("SELECT cdp.analyze_stale(ARRAY['cdp.events', 'cdp.event_anchors']::pg_catalog.regclass[])",
				0, NULL, NULL, SPI_OK_SELECT);
}

/*
 * The store's unit (SPI connected, in the unit's transaction): folds the
 * next batches, up to cdp.worker_batch_size events, into the profile store
 * (cdp.sync, which commits its progress with the facts); returns its events
 * and sets *more when batches are still pending.
 */
static int64
store_unit(bool *more)
{
	CdpSyncResult r;

	*more = false;
	if (!cdp_store_installed())
		return 0;				/* a 0.1.0 schema, not updated yet */
	set_state("updating the profile store");
	r = cdp_store_sync_locked(cdp_worker_batch_size);
	*more = r.pending > 0;
	return r.events;
}

/*
 * The stitching unit: the oldest rows of the stitch queue, whole rows up to
 * cdp.worker_stitch_batch events; sets *more when rows remain.
 */
static int64
stitch_unit(bool *more)
{
	*more = false;
	if (!cdp_stitch_queue_pending())
		return 0;
	set_state("stitching bulk loads");
	return cdp_stitch_queue_run(0, cdp_worker_stitch_batch, more);
}

/*
 * The journeys' unit: incremental journey detection at now(), for the
 * profiles the new batches touched and the due transitions; detection
 * commits its watermarks with its breaks.
 */
static void
journey_unit(void)
{
	set_state("detecting journey breaks");

	/*
	 * Detection's own lock first, so that no run by hand commits between
	 * here and the run: its as_of is then never later than this one's (an
	 * earlier as_of would make detection replay every profile).
	 */
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(JOURNEY_LOCK_KEY1),
						Int32GetDatum(JOURNEY_LOCK_KEY2));
	cdp_spi_run("SELECT FROM cdp.detect_journey_breaks(GREATEST(pg_catalog.now(), "
				"(SELECT p.as_of FROM cdp.journey_progress p)))",
				0, NULL, NULL, SPI_OK_SELECT);
}

/*
 * The triggers' unit: cdp.run_triggers (src/sql/triggers.sql) takes the
 * moments the new batches and breaks bring, decides the due ones and
 * writes the outbox, with its progress marker; remembers when the next
 * waiting moment is due, for the worker to wake then.
 */
static void
triggers_unit(void)
{
	bool		isnull;
	Datum		due;

	triggers_due = 0;
	if (!OidIsValid(get_relname_relid("trigger_progress", get_namespace_oid("cdp", false))))
		return;					/* a schema not updated yet */
	set_state("running triggers");
	cdp_spi_run("SELECT next_due FROM cdp.run_triggers()", 0, NULL, NULL, SPI_OK_SELECT);
	due = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		triggers_due = DatumGetTimestampTz(due);
}

/*
 * One unit of work in a transaction of its own.  Records an error in the
 * shared state and re-throws it (the worker then exits and is restarted).
 * Returns false when cdp is not installed; sets *more when the unit has
 * more to do.
 */
static bool
run_unit(Unit unit, bool *more)
{
	volatile bool installed = false;
	volatile int64 events = 0;
	volatile int64 stitched = 0;
	volatile double ms = 0;
	TimestampTz now;

	*more = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		instr_time	t0,
					t1;

		INSTR_TIME_SET_CURRENT(t0);
		cdp_spi_connect();
		installed = extension_installed();
		if (installed && unit == UNIT_STITCH)
			stitched = stitch_unit(more);
		else if (installed && unit == UNIT_STORE)
			events = store_unit(more);
		else if (installed && unit == UNIT_PREPARE)
		{
			set_state("summarizing new events");
			prepare_reads();
		}
		else if (installed && unit == UNIT_TRIGGERS)
			triggers_unit();
		else if (installed)
			journey_unit();
		cdp_spi_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		INSTR_TIME_SET_CURRENT(t1);
		INSTR_TIME_SUBTRACT(t1, t0);
		ms = INSTR_TIME_GET_MILLISEC(t1);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		MemoryContext cxt = MemoryContextSwitchTo(TopMemoryContext);

		TimestampTz now = GetCurrentTimestamp();
		char		message[256];

		edata = CopyErrorData();
		MemoryContextSwitchTo(cxt);
		snprintf(message, sizeof(message), "%s (SQLSTATE %s)",
				 edata->message, unpack_sql_state(edata->sqlerrcode));
		SpinLockAcquire(&shared->mutex);
		shared->errors++;
		shared->last_error_at = now;
		memcpy(shared->last_error, message, sizeof(message));
		strlcpy(shared->state, "restarting after an error", STATE_LEN);
		SpinLockRelease(&shared->mutex);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	if (!installed)
	{
		char		state[STATE_LEN];

		snprintf(state, sizeof(state), "waiting: cdp is not installed in database \"%s\"",
				 cdp_worker_database);
		set_state(state);
		return false;
	}
	now = GetCurrentTimestamp();
	SpinLockAcquire(&shared->mutex);
	shared->units++;
	shared->events += events;
	shared->stitched += stitched;
	if (unit == UNIT_STITCH)
		shared->stitch_ms += ms;
	shared->last_unit_at = now;
	shared->last_unit_ms = ms;
	strlcpy(shared->state, "waiting for new events", STATE_LEN);
	SpinLockRelease(&shared->mutex);
	if (stitched > 0 || events >= cdp_worker_batch_size)
		prepare_due = true;		/* a bulk load: new pages to summarize before the store reads them */
	return true;
}

/* Marks the worker stopped in the shared state (on exit). */
static void
worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->database = InvalidOid;
	if (strncmp(shared->state, "connecting", 10) != 0 && strncmp(shared->state, "restarting", 10) != 0)
		strlcpy(shared->state, "stopped", STATE_LEN);
	SpinLockRelease(&shared->mutex);
}

/*
 * One round of work: stitching units back to back while the queue has rows
 * (for at most STITCH_SLICE_MS, so that the store and journeys follow a
 * backlog closely, unless sessions wait for the queue), then, after
 * stitching or a backlog, the unit that summarizes new events, then the
 * store's unit, then the journeys' (unless they ran less than
 * JOURNEYS_EVERY_MS ago: journeys_wait_ms then says when).  Returns
 * whether work remains (the next round then starts at once).
 */
static bool
run_work(void)
{
	instr_time	start;
	instr_time	now;
	bool		stitch_more = false;
	bool		store_more = false;
	bool		ignored;

	INSTR_TIME_SET_CURRENT(start);
	do
	{
		if (!run_unit(UNIT_STITCH, &stitch_more))
			return false;		/* cdp is not installed */
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		CHECK_FOR_INTERRUPTS();
	} while (stitch_more && (INSTR_TIME_GET_MILLISEC(now) < STITCH_SLICE_MS || stitching_wanted()));
	if (prepare_due)
	{
		prepare_due = false;
		(void) run_unit(UNIT_PREPARE, &ignored);
	}
	(void) run_unit(UNIT_STORE, &store_more);
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, last_journeys);
	journeys_wait_ms = -1;
	if (INSTR_TIME_GET_MILLISEC(now) < JOURNEYS_EVERY_MS)
	{
		/* the store first, while new events keep coming; journeys soon */
		journeys_wait_ms = JOURNEYS_EVERY_MS - (long) INSTR_TIME_GET_MILLISEC(now) + 1;
	}
	else
	{
		(void) run_unit(UNIT_JOURNEYS, &ignored);
		INSTR_TIME_SET_CURRENT(last_journeys);
	}
	(void) run_unit(UNIT_TRIGGERS, &ignored);
	return stitch_more || store_more;
}

/*
 * How long the worker sleeps unless woken: cdp.worker_naptime, or less
 * when a skipped journeys' unit or a trigger's waiting moment is due
 * sooner (a moment is decided at most a few milliseconds after its time).
 */
static long
wait_ms(void)
{
	long		ms = cdp_worker_naptime;

	if (journeys_wait_ms >= 0 && journeys_wait_ms < ms)
		ms = journeys_wait_ms;
	if (triggers_due != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), triggers_due, &secs, &usecs);
		if (secs * 1000 + usecs / 1000 + 1 < ms)
			ms = secs * 1000 + usecs / 1000 + 1;
	}
	return ms;
}

/* The worker's main loop. */
void
cdp_worker_main(Datum arg)
{
	char	   *database;

	am_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (IsBinaryUpgrade)
		proc_exit(0);

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->procno = MyProc->pgprocno;
	snprintf(shared->state, STATE_LEN, "connecting to database \"%s\" (if it stays so, see the server log)",
			 cdp_worker_database);
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	database = pstrdup(cdp_worker_database);
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	/* each statement sees what committed before it (the queue, new batches) */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SpinLockAcquire(&shared->mutex);
	shared->database = MyDatabaseId;
	SpinLockRelease(&shared->mutex);
	pgstat_report_appname("cdp worker");
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, cdp_worker_database) != 0)
			{
				set_state("restarting: cdp.worker_database changed");
				proc_exit(1);	/* the postmaster starts it again, connected to the new one */
			}
		}
		if (!cdp_worker_enabled)
			set_state("waiting: cdp.worker_enabled is off");
		else if (run_work())
			continue;
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms(), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* cdp.worker_state(): the worker's shared state as one row. */
Datum
cdp_worker_state(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[14];
	bool		nulls[14] = {false};
	char	   *dbname;
	WorkerShared copy;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (shared == NULL)
	{
		memset(&copy, 0, sizeof(copy));
		strlcpy(copy.state, "not loaded: cdp is not in shared_preload_libraries", STATE_LEN);
	}
	else
	{
		SpinLockAcquire(&shared->mutex);
		copy = *shared;
		SpinLockRelease(&shared->mutex);
	}
	values[0] = BoolGetDatum(copy.pid != 0);
	values[1] = Int32GetDatum(copy.pid);
	nulls[1] = copy.pid == 0;
	values[2] = CStringGetTextDatum(copy.state);
	values[3] = BoolGetDatum(cdp_worker_enabled);
	values[4] = Int64GetDatum(copy.units);
	values[5] = Int64GetDatum(copy.events);
	values[6] = Int64GetDatum(copy.stitched);
	values[7] = Float8GetDatum(copy.stitch_ms / 1000.0);
	values[8] = TimestampTzGetDatum(copy.last_unit_at);
	nulls[8] = copy.last_unit_at == 0;
	values[9] = Float8GetDatum(copy.last_unit_ms);
	nulls[9] = copy.units == 0;
	values[10] = Int64GetDatum(copy.errors);
	values[11] = CStringGetTextDatum(copy.last_error);
	nulls[11] = copy.errors == 0;
	values[12] = TimestampTzGetDatum(copy.last_error_at);
	nulls[12] = copy.errors == 0;
	dbname = OidIsValid(copy.database) ? get_database_name(copy.database) : NULL;
	values[13] = dbname ? CStringGetTextDatum(dbname) : (Datum) 0;
	nulls[13] = dbname == NULL;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
