-- cdp's pg_cron jobs: run in the database named by cron.database_name,
-- after CREATE EXTENSION pg_cron and cdp (README "Scheduled jobs").
--
-- Registers (or updates in place) partition upkeep, the nightly scores,
-- journey detection (for clusters without the background worker),
-- retention, the quarantine's clean-up and the outbox's; see
-- SELECT * FROM cdp.default_jobs() for the commands, to run them from
-- another scheduler instead.
SELECT * FROM cdp.schedule_jobs();

-- Other schedules, and a retention of 13 months:
-- SELECT * FROM cdp.schedule_jobs('{"cdp-journeys": "* * * * *"}', retention => '13 months');

-- How they ran:
-- SELECT * FROM cdp.job_status;
