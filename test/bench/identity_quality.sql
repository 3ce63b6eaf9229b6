-- Pairwise precision and recall of cdp's profiles against the true persons of
-- the demo generator's ground truth.  Expects a table truth(kind, value,
-- person_id, flag) loaded from --truth-out; shared and junk values (no
-- person) are left out.  Each raw form is normalized as cdp does; forms of
-- one identifier count once.  An identifier that did not enter the graph
-- counts as a profile of its own.
--   precision = pairs in the same profile and the same person / pairs in the same profile
--   recall    = pairs in the same profile and the same person / pairs of the same person
--   linkable recall: the same over the pairs of the same person that the
--   events connect at all (same component of lp, see label_propagation.sql,
--   which must have run): no resolver can join identifiers that never appear
--   in an event with the rest of their person's.
CREATE TEMP TABLE truth_resolved AS
SELECT DISTINCT ON (t.kind, coalesce(c.normalized, t.value)) t.kind, coalesce(c.normalized, t.value) AS value,
       t.person_id, i.profile_id, lp.label AS component
FROM truth t
CROSS JOIN LATERAL cdp.check_identifier(t.kind, t.value) c
LEFT JOIN cdp.identifiers i ON i.kind = t.kind AND i.value = c.normalized
LEFT JOIN lp ON lp.id = i.identifier_id
WHERE t.person_id IS NOT NULL;

CREATE TEMP TABLE truth_labeled AS
SELECT person_id, coalesce(profile_id, -row_number() OVER ()) AS profile_id,
       coalesce(component, -row_number() OVER ()) AS component
FROM truth_resolved;

WITH same_both AS (SELECT count(*) AS n FROM truth_labeled GROUP BY profile_id, person_id),
     same_profile AS (SELECT count(*) AS n FROM truth_labeled GROUP BY profile_id),
     same_person AS (SELECT count(*) AS n FROM truth_labeled GROUP BY person_id),
     linkable AS (SELECT count(*) AS n FROM truth_labeled GROUP BY person_id, component),
     linked AS (SELECT count(*) AS n FROM truth_labeled GROUP BY person_id, component, profile_id),
     pairs AS (
	SELECT (SELECT sum(n * (n - 1) / 2) FROM same_both) AS tp,
	       (SELECT sum(n * (n - 1) / 2) FROM same_profile) AS predicted,
	       (SELECT sum(n * (n - 1) / 2) FROM same_person) AS actual,
	       (SELECT sum(n * (n - 1) / 2) FROM linkable) AS linkable,
	       (SELECT sum(n * (n - 1) / 2) FROM linked) AS linked)
SELECT (SELECT count(*) FROM truth_labeled) AS identifiers,
       (SELECT count(DISTINCT person_id) FROM truth_labeled) AS persons,
       (SELECT count(DISTINCT profile_id) FROM truth_labeled) AS profiles,
       round(tp / nullif(predicted, 0), 4) AS precision,
       round(tp / nullif(actual, 0), 4) AS recall,
       round(linked / nullif(linkable, 0), 4) AS linkable_recall
FROM pairs;
