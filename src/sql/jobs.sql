
-- ---------------------------------------------------------------------------
-- Scheduled jobs: cdp's batch work (partitions, scores, journeys, retention,
-- quarantine, outbox) registered with pg_cron in one call, removed in one,
-- and watched through cdp.job_status.  pg_cron is optional: cdp installs
-- without it, since its objects are reached only through dynamic SQL after
-- cdp.cron_require has checked that it is there.
-- ---------------------------------------------------------------------------

-- The list of jobs, said once: schedule_jobs registers it, unschedule_jobs
-- and job_runs find the jobs by its names.  IntervalStyle is pinned so that
-- the retention is written into the command in a form any session reads.
CREATE FUNCTION cdp.default_jobs(retention interval DEFAULT '3 years',
	OUT job_name text, OUT schedule text, OUT command text, OUT description text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
BEGIN
	IF retention IS NULL THEN
		RAISE EXCEPTION 'retention must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF retention < interval '2 months' THEN
		RAISE EXCEPTION 'retention must be %at least 2 months: got %',
			CASE WHEN retention <= interval '0' THEN 'positive and ' ELSE '' END, retention
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'cdp.drop_partitions refuses to drop a partition that may hold events of the last month.',
			      HINT = 'Give the time events are kept, such as interval ''13 months'' or ''3 years''.';
	END IF;
	RETURN QUERY VALUES
		('cdp-partitions', '0 3 * * *',
		 'SELECT cdp.ensure_partitions(now(), now() + interval ''3 months'')',
		 'Creates the monthly partitions of cdp.events three months ahead and moves early events out of the default partition'),
		('cdp-scores', '0 2 * * *', 'SELECT cdp.refresh_scores(now())',
		 'Refits the lifetime-value models and refills cdp.rfm and cdp.clv'),
		('cdp-journeys', '*/5 * * * *', 'SELECT cdp.detect_journey_breaks()',
		 'Brings cdp.journey_breaks up to now; only useful when the background worker does not run (it detects breaks within a second), harmless otherwise'),
		('cdp-retention', '0 4 1 * *',
		 format('SELECT count(*) FROM cdp.drop_partitions(now() - interval %L)', retention),
		 format('Drops the monthly partitions of events older than %s (retention)', retention)),
		('cdp-quarantine', '30 4 * * 0',
		 'DELETE FROM cdp.rejected_events WHERE received_at < now() - interval ''90 days''',
		 'Empties the quarantine (cdp.rejected_events) of rows older than 90 days'),
		('cdp-outbox', '*/10 * * * *', 'SELECT cdp.purge_outbox()',
		 'Deletes delivered and dead outbox messages older than cdp.outbox_retention');
END
$$;
COMMENT ON FUNCTION cdp.default_jobs(interval) IS 'cdp''s scheduled jobs: name, default cron schedule, SQL command and what it does, with events kept for retention (at least 2 months). cdp.schedule_jobs registers them with pg_cron; without pg_cron, run these commands from another scheduler';

-- Raises the error that says what is missing when pg_cron cannot run this
-- database's jobs: not loaded, loaded for another database, not installed.
-- pg_settings, not current_setting: postgresql.conf may set cron.* without
-- pg_cron loaded, and such a placeholder is not in pg_settings.  Warns when
-- the launcher is not running (not yet after a start, or it exited, as it
-- does when its database is dropped).
CREATE FUNCTION cdp.cron_require() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cron_db text := (SELECT s.setting FROM pg_settings s WHERE s.name = 'cron.database_name');
	db      text := current_database();
	problem text;
BEGIN
	IF cron_db IS NULL THEN
		problem := 'pg_cron is not loaded (not in shared_preload_libraries)';
	ELSIF cron_db <> db THEN
		problem := format('pg_cron runs the jobs of database %I only (cron.database_name)', cron_db);
	ELSIF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		problem := 'extension pg_cron is not created in it';
	ELSE
		IF NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_type = 'pg_cron launcher') THEN
			RAISE WARNING 'pg_cron''s launcher is not running (yet): no job runs until it does'
				USING HINT = 'It starts a moment after the server; if it stopped (as when its database is dropped), the server log says why, and it starts again when the server restarts.';
		END IF;
		RETURN;
	END IF;
	RAISE EXCEPTION 'pg_cron cannot run cdp''s jobs in database %: %', quote_ident(db), problem
		USING ERRCODE = 'object_not_in_prerequisite_state',
		      HINT = format('To schedule them with pg_cron, set shared_preload_libraries = ''pg_cron,cdp'' and cron.database_name = %L in postgresql.conf, '
		                    'restart the server, run CREATE EXTENSION pg_cron in database %I, then call cdp.schedule_jobs() again. '
		                    'Without pg_cron, run the commands of SELECT * FROM cdp.default_jobs() from another scheduler.', db, db);
END
$$;
COMMENT ON FUNCTION cdp.cron_require() IS 'Internal: raises an error (55000) naming what is missing when pg_cron cannot run the jobs of this database (not in shared_preload_libraries, cron.database_name naming another database, or extension pg_cron not created here), with the steps to set it up; warns when pg_cron''s launcher is not running';

-- Checks the overrides of cdp.schedule_jobs: an object of known job names
-- and string values (pg_cron judges the schedules themselves).
CREATE FUNCTION cdp.check_job_schedules(schedules jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text := (SELECT string_agg(j.job_name, ', ') FROM cdp.default_jobs() j);
	o     record;
BEGIN
	IF schedules IS NULL THEN
		RAISE EXCEPTION 'schedules must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass ''{}'' to register every job with its default schedule.';
	ELSIF jsonb_typeof(schedules) <> 'object' THEN
		RAISE EXCEPTION 'schedules must be a JSON object of job names and cron schedules: got %', left(schedules::text, 200)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = format('Such as ''{"cdp-partitions": "0 1 * * *"}''; the jobs are %s.', names);
	END IF;
	FOR o IN SELECT e.key, e.value FROM jsonb_each(schedules) e LOOP
		IF o.key NOT IN (SELECT j.job_name FROM cdp.default_jobs() j) THEN
			RAISE EXCEPTION 'unknown job "%" in schedules (given %)', left(o.key, 200), left(o.value::text, 200)
				USING ERRCODE = 'invalid_parameter_value', HINT = format('The jobs are %s.', names);
		ELSIF jsonb_typeof(o.value) <> 'string' THEN
			RAISE EXCEPTION 'the schedule of job "%" must be a string: got %', o.key, left(o.value::text, 200)
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Give a cron schedule as a string, such as "0 3 * * *" (minute, hour, day of month, month, day of week).';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.check_job_schedules(jsonb) IS 'Internal: refuses (22023) overrides of cdp.schedule_jobs that are not a JSON object, name an unknown job or give a schedule that is not a string';

-- Registers one job, or updates it in place: pg_cron 1.4's cron.schedule
-- upserts by job name (and user).  A schedule pg_cron refuses is reported
-- with the job's name.
CREATE FUNCTION cdp.cron_schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO id USING job_name, schedule, command;
	RETURN id;
EXCEPTION WHEN invalid_parameter_value THEN
	RAISE EXCEPTION 'invalid schedule "%" for job "%"', left(schedule, 200), job_name
		USING ERRCODE = 'invalid_parameter_value', DETAIL = format('pg_cron says: %s.', SQLERRM),
		      HINT = 'Give a cron schedule: five fields, minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-6, 0 is Sunday), such as "*/10 * * * *" or "0 3 * * *"; pg_cron 1.4 runs a job at most once a minute.';
END
$$;
COMMENT ON FUNCTION cdp.cron_schedule(text, text, text) IS 'Internal: registers or updates one pg_cron job by name (cron.schedule, through dynamic SQL) and returns its jobid; a schedule pg_cron refuses raises 22023 naming the job';

CREATE FUNCTION cdp.schedule_jobs(schedules jsonb DEFAULT '{}', retention interval DEFAULT '3 years')
RETURNS TABLE (job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cdp.check_job_schedules(schedules);
	PERFORM cdp.default_jobs(retention);
	PERFORM cdp.cron_require();
	RETURN QUERY
	SELECT j.job_name, s.schedule, j.command, cdp.cron_schedule(j.job_name, s.schedule, j.command)
	FROM cdp.default_jobs(retention) j
	CROSS JOIN LATERAL (SELECT coalesce(schedules ->> j.job_name, j.schedule) AS schedule) s;
END
$$;
COMMENT ON FUNCTION cdp.schedule_jobs(jsonb, interval) IS 'Registers cdp''s jobs (cdp.default_jobs) with pg_cron, or updates them in place when they exist, and returns each with its pg_cron jobid. schedules overrides the cron schedule of named jobs, such as ''{"cdp-partitions": "* * * * *"}''; retention is how long events are kept (cdp-retention, at least 2 months). An unknown job, a schedule that is not a string or that pg_cron refuses raise 22023; without pg_cron usable in this database, 55000 says what to set up';

CREATE FUNCTION cdp.unschedule_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	removed integer;
BEGIN
	PERFORM cdp.cron_require();
	EXECUTE 'SELECT count(*) FILTER (WHERE cron.unschedule(j.jobid)) FROM cron.job j
	         WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()
	           AND j.username = CURRENT_USER'
		INTO removed USING ARRAY(SELECT d.job_name FROM cdp.default_jobs() d);
	RETURN removed;
END
$$;
COMMENT ON FUNCTION cdp.unschedule_jobs() IS 'Removes cdp''s jobs (the names of cdp.default_jobs) of the current user from pg_cron and returns how many it removed (0 when none was scheduled); their past runs stay in cron.job_run_details. Without pg_cron usable in this database, raises 55000 saying what to set up';

-- The rows of cdp.job_status; none when pg_cron is not installed here, so
-- that the view exists (and answers) without it.
CREATE FUNCTION cdp.job_runs()
RETURNS TABLE (job_name text, jobid bigint, schedule text, command text, active boolean,
               runs bigint, failures bigint, last_start timestamptz, last_end timestamptz,
               last_status text, last_message text, last_failure_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		RETURN;
	END IF;
	RETURN QUERY EXECUTE
	'SELECT j.jobname::text, j.jobid, j.schedule, j.command, j.active, r.runs, r.failures,
	        l.start_time, l.end_time, l.status, l.return_message, r.last_failure_at
	 FROM cron.job j
	 CROSS JOIN LATERAL (
		SELECT count(*) AS runs, count(*) FILTER (WHERE d.status = ''failed'') AS failures,
		       max(coalesce(d.end_time, d.start_time)) FILTER (WHERE d.status = ''failed'') AS last_failure_at
		FROM cron.job_run_details d WHERE d.jobid = j.jobid) r
	 LEFT JOIN LATERAL (
		SELECT d.start_time, d.end_time, d.status, d.return_message
		FROM cron.job_run_details d WHERE d.jobid = j.jobid ORDER BY d.runid DESC LIMIT 1) l ON true
	 WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()
	 ORDER BY pg_catalog.array_position($1, j.jobname::text)'
	USING ARRAY(SELECT d.job_name FROM cdp.default_jobs() d);
END
$$;
COMMENT ON FUNCTION cdp.job_runs() IS 'Internal: the rows of cdp.job_status, read from cron.job and cron.job_run_details through dynamic SQL; no rows when extension pg_cron is not installed in this database';

CREATE VIEW cdp.job_status AS
SELECT r.job_name, r.jobid, r.schedule, r.command, r.active, r.runs, r.failures,
       r.last_start, r.last_end, r.last_status, r.last_message, r.last_failure_at
FROM cdp.job_runs() r;
COMMENT ON VIEW cdp.job_status IS 'cdp''s jobs registered with pg_cron for this database (by cdp.schedule_jobs) and how their runs went, from cron.job and cron.job_run_details; pg_cron''s row security shows a role its own jobs only (a superuser sees every role''s). Empty without pg_cron';
COMMENT ON COLUMN cdp.job_status.job_name IS 'Name of the job (cdp-partitions, cdp-scores, cdp-journeys, cdp-retention, cdp-quarantine, cdp-outbox)';
COMMENT ON COLUMN cdp.job_status.jobid IS 'pg_cron''s id of the job (cron.job.jobid), as returned by cdp.schedule_jobs; its runs are in cron.job_run_details';
COMMENT ON COLUMN cdp.job_status.schedule IS 'Cron schedule: minute, hour, day of month, month, day of week (UTC unless cron.timezone says otherwise)';
COMMENT ON COLUMN cdp.job_status.command IS 'The SQL the job runs';
COMMENT ON COLUMN cdp.job_status.active IS 'Whether pg_cron runs it (cron.alter_job(jobid, active => false) pauses it)';
COMMENT ON COLUMN cdp.job_status.runs IS 'Runs recorded in cron.job_run_details, the one in progress included';
COMMENT ON COLUMN cdp.job_status.failures IS 'Runs that failed';
COMMENT ON COLUMN cdp.job_status.last_start IS 'When the latest run started; NULL if it never ran';
COMMENT ON COLUMN cdp.job_status.last_end IS 'When the latest run ended; NULL while it runs or if it never ran';
COMMENT ON COLUMN cdp.job_status.last_status IS 'Status of the latest run: starting, running, sending, connecting, succeeded or failed';
COMMENT ON COLUMN cdp.job_status.last_message IS 'What pg_cron recorded for the latest run: such as ''1 row'' for a command that returned one row, or the error message';
COMMENT ON COLUMN cdp.job_status.last_failure_at IS 'When the latest failed run ended (or started, if it has no end); NULL if none failed';
