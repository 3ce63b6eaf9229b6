-- The journeys of every funnel of cdp.funnels computed the plain-SQL way,
-- with window functions over the funnel events of each profile and a
-- recursive query that chains journeys, by the rules of src/core/funnel.h.
-- Used by test/bench/journeys.sh (against cdp.detect_journey_breaks) and
-- test/journeys_real.sh (as an independent check).
--
--   psql -v as_of="'2026-01-01 00:00+00'" -f test/bench/journeys_plain.sql
--
-- Leaves the temporary tables plain_journeys (every journey, with the
-- status at as_of) and plain_breaks (the broken ones, in the columns of
-- cdp.journey_breaks).  Windows are fixed durations, as in the core.

-- 1. funnel events, numbered per (funnel, profile) in the order of the
--    state machine: time, step, event id
CREATE TEMP TABLE plain_ev AS
SELECT f.funnel_id, i.profile_id, e.occurred_at AS t, f.step, e.channel, e.event_id,
       f.n, f.w, f.a, f.m,
       row_number() OVER (PARTITION BY f.funnel_id, i.profile_id
                          ORDER BY e.occurred_at, f.step, e.event_id) AS pos
FROM cdp.events e
JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
JOIN (SELECT fu.funnel_id, s.type, s.step::integer AS step, cardinality(fu.steps) AS n,
             fu.conversion_window AS w, fu.abandon_after AS a, fu.min_step AS m
      FROM cdp.funnels fu, unnest(fu.steps) WITH ORDINALITY s(type, step)) f ON f.type = e.type
WHERE e.occurred_at <= :as_of;

-- 2. for every step-1 event, the journey it would start: where it would
--    complete (the first last-step event after it, if inside the window),
--    and the step-1 event that would start the next journey (the first
--    one after the completion, or at or after the end of the window)
CREATE TEMP TABLE plain_next AS
SELECT funnel_id, profile_id, pos, t, step, n, w,
       min(CASE WHEN step = n THEN pos END) OVER later AS next_last_pos,
       min(CASE WHEN step = n THEN t END) OVER later AS next_last_t,
       min(CASE WHEN step = 1 THEN pos END) OVER later AS next_first_pos
FROM plain_ev
WINDOW later AS (PARTITION BY funnel_id, profile_id ORDER BY pos DESC ROWS UNBOUNDED PRECEDING);

-- the first step-1 event at or after each window end: probes merged with
-- the step-1 events in time order, a running minimum of positions
CREATE TEMP TABLE plain_after_window AS
SELECT funnel_id, profile_id, src_pos, next_pos FROM (
	SELECT funnel_id, profile_id, src_pos, kind,
	       min(pos) OVER (PARTITION BY funnel_id, profile_id ORDER BY t DESC, kind DESC
	                      ROWS UNBOUNDED PRECEDING) AS next_pos
	FROM (SELECT funnel_id, profile_id, t, 1 AS kind, pos, NULL::bigint AS src_pos
	      FROM plain_next WHERE step = 1
	      UNION ALL
	      SELECT funnel_id, profile_id, t + w, 0, NULL, pos
	      FROM plain_next WHERE step = 1) x) y
WHERE kind = 0;

CREATE TEMP TABLE plain_cand AS
SELECT c.funnel_id, c.profile_id, c.pos, c.t,
       CASE WHEN c.next_last_t < c.t + c.w THEN c.next_last_pos END AS completed_pos,
       CASE WHEN c.next_last_t < c.t + c.w THEN d.next_first_pos ELSE aw.next_pos END AS next_start
FROM plain_next c
LEFT JOIN plain_next d ON d.funnel_id = c.funnel_id AND d.profile_id = c.profile_id AND d.pos = c.next_last_pos
JOIN plain_after_window aw ON aw.funnel_id = c.funnel_id AND aw.profile_id = c.profile_id AND aw.src_pos = c.pos
WHERE c.step = 1;
CREATE INDEX ON plain_cand (funnel_id, profile_id, pos);
ANALYZE plain_cand;

-- 3. the journeys: from the first step-1 event of each profile, follow
--    next_start
CREATE TEMP TABLE plain_starts AS
WITH RECURSIVE chain AS (
	SELECT * FROM (
		SELECT DISTINCT ON (c.funnel_id, c.profile_id)
		       c.funnel_id, c.profile_id, c.pos, c.completed_pos, c.next_start, 1::bigint AS journey_no
		FROM plain_cand c ORDER BY c.funnel_id, c.profile_id, c.pos) first
	UNION ALL
	-- LATERAL: one index probe per chain and step, not a scan per step
	SELECT c.funnel_id, c.profile_id, c.pos, c.completed_pos, c.next_start, ch.journey_no + 1
	FROM chain ch
	CROSS JOIN LATERAL (SELECT * FROM plain_cand c
	                    WHERE c.funnel_id = ch.funnel_id AND c.profile_id = ch.profile_id
	                      AND c.pos = ch.next_start LIMIT 1) c)
SELECT funnel_id, profile_id, pos AS start_pos, completed_pos, journey_no FROM chain;

-- 4. each event in its journey: the last start at or before it, kept if
--    up to the completion and inside the window
CREATE TEMP TABLE plain_member AS
SELECT x.* FROM (
	SELECT e.*, s.journey_no, s.completed_pos, s.start_pos,
	       first_value(e.t) OVER journey AS started_at
	FROM (SELECT e.*, max(st.start_pos) OVER (PARTITION BY e.funnel_id, e.profile_id ORDER BY e.pos
	                                          ROWS UNBOUNDED PRECEDING) AS start_of
	      FROM plain_ev e
	      LEFT JOIN plain_starts st ON st.funnel_id = e.funnel_id AND st.profile_id = e.profile_id
	                               AND st.start_pos = e.pos) e
	JOIN plain_starts s ON s.funnel_id = e.funnel_id AND s.profile_id = e.profile_id AND s.start_pos = e.start_of
	WINDOW journey AS (PARTITION BY e.funnel_id, e.profile_id, e.start_of ORDER BY e.pos)) x
WHERE (x.completed_pos IS NULL OR x.pos <= x.completed_pos) AND x.t < x.started_at + x.w;

-- 5. per event, the pause before it: a break when it lasted abandon_after
--    or more, the journey had reached min_step, and it ends in the window
CREATE TEMP TABLE plain_gaps AS
SELECT m.*,
       lag(m.t) OVER j AS prev_t, lag(m.channel) OVER j AS prev_channel, lag(m.event_id) OVER j AS prev_id,
       lag(m.reached) OVER j AS prev_reached
FROM (SELECT m.*, max(m.step) OVER (PARTITION BY m.funnel_id, m.profile_id, m.start_of ORDER BY m.pos
                                    ROWS UNBOUNDED PRECEDING) AS reached
      FROM plain_member m) m
WINDOW j AS (PARTITION BY m.funnel_id, m.profile_id, m.start_of ORDER BY m.pos);

CREATE TEMP TABLE plain_journeys AS
WITH per AS (
	SELECT funnel_id, profile_id, start_of, journey_no, started_at, w, a, n, m,
	       max(t) AS last_t, max(reached) AS reached_step, count(*) AS events,
	       max(pos) AS last_pos,
	       max(CASE WHEN step = n THEN t END) AS completed_at,
	       max(CASE WHEN step = n THEN channel END) AS completed_channel,
	       -- the first pause that is a break
	       min(pos) FILTER (WHERE prev_t IS NOT NULL AND t - prev_t >= a AND prev_reached >= m
	                              AND prev_t + a < started_at + w) AS break_pos
	FROM plain_gaps
	GROUP BY funnel_id, profile_id, start_of, journey_no, started_at, w, a, n, m),
brk AS (
	SELECT per.*,
	       CASE WHEN per.break_pos IS NOT NULL THEN g.prev_t + per.a
	            WHEN per.completed_at IS NULL AND per.reached_step >= per.m AND per.last_t + per.a <= :as_of
	                 AND per.last_t + per.a < per.started_at + per.w THEN per.last_t + per.a END AS broken_at,
	       CASE WHEN per.break_pos IS NOT NULL THEN g.prev_reached ELSE per.reached_step END AS break_step,
	       CASE WHEN per.break_pos IS NOT NULL THEN g.prev_channel ELSE l.channel END AS break_channel,
	       CASE WHEN per.break_pos IS NOT NULL THEN g.prev_id ELSE l.event_id END AS break_event_id
	FROM per
	JOIN plain_gaps l ON l.funnel_id = per.funnel_id AND l.profile_id = per.profile_id AND l.pos = per.last_pos
	LEFT JOIN plain_gaps g ON g.funnel_id = per.funnel_id AND g.profile_id = per.profile_id AND g.pos = per.break_pos)
SELECT funnel_id, profile_id, journey_no, start_of AS start_pos, started_at, last_t AS last_event_at,
       reached_step, events, broken_at IS NOT NULL AS broken,
       broken_at, CASE WHEN broken_at IS NOT NULL THEN break_step END AS break_step,
       CASE WHEN broken_at IS NOT NULL THEN break_channel END AS break_channel,
       CASE WHEN broken_at IS NOT NULL THEN break_event_id END AS break_event_id,
       CASE WHEN completed_at IS NOT NULL AND broken_at IS NULL THEN 'completed'
            WHEN completed_at IS NOT NULL AND completed_channel = break_channel THEN 'recovered'
            WHEN completed_at IS NOT NULL THEN 'converted_elsewhere'
            WHEN started_at + w <= :as_of THEN 'expired'
            WHEN broken_at IS NOT NULL THEN 'open'
            ELSE 'in_progress' END AS status,
       CASE WHEN completed_at IS NOT NULL THEN completed_at
            WHEN started_at + w <= :as_of THEN started_at + w END AS resolved_at,
       completed_channel AS resolved_channel
FROM brk;

CREATE TEMP TABLE plain_breaks AS
SELECT profile_id, funnel_id, started_at, journey_no, reached_step, break_step,
       broken_at - a.abandon_after AS last_event_at, break_event_id AS last_event_id, broken_at,
       break_channel AS channel, status,
       CASE WHEN status <> 'open' THEN resolved_at END AS resolved_at,
       CASE WHEN status IN ('recovered', 'converted_elsewhere') THEN resolved_channel END AS resolved_channel
FROM plain_journeys j JOIN cdp.funnels a USING (funnel_id)
WHERE broken;
