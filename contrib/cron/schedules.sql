-- Example pg_cron schedules for cdp. Run in the database named by
-- cron.database_name, after CREATE EXTENSION pg_cron and cdp.

-- Keep monthly partitions three months ahead (and move anything that
-- arrived early out of the default partition), every night at 03:00.
SELECT cron.schedule('cdp-partitions', '0 3 * * *',
	$$SELECT cdp.ensure_partitions(now(), now() + interval '3 months')$$);

-- Retention: drop the months older than three years, on the 1st at 04:00.
-- (Derived state can be rebuilt from the events that remain.)
SELECT cron.schedule('cdp-retention', '0 4 1 * *',
	$$SELECT cdp.drop_partitions(now() - interval '3 years')$$);

-- Empty the quarantine of rows older than 90 days, every Sunday.
SELECT cron.schedule('cdp-quarantine', '30 4 * * 0',
	$$DELETE FROM cdp.rejected_events WHERE received_at < now() - interval '90 days'$$);

-- Scores: RFM segments and lifetime values, every night at 02:00.
SELECT cron.schedule('cdp-scores', '0 2 * * *',
	$$SELECT cdp.refresh_scores(now())$$);

-- Broken journeys: incremental detection every five minutes.
SELECT cron.schedule('cdp-journeys', '*/5 * * * *',
	$$SELECT cdp.detect_journey_breaks()$$);
