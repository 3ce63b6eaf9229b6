-- The plain-SQL way warehouses group identifiers: label propagation over the
-- links (every pair seen together), each identifier taking the smallest label
-- among its neighbours, with UPDATE ... FROM until nothing changes.  Leaves
-- lp(id, label): connected components, with no limit or rule applied.
DROP TABLE IF EXISTS lp_edges, lp;
CREATE TABLE lp_edges AS
	SELECT anchor_id AS a, identifier_id AS b FROM cdp.identity_links
	UNION ALL
	SELECT identifier_id, anchor_id FROM cdp.identity_links;
CREATE INDEX ON lp_edges (a);
CREATE TABLE lp AS SELECT identifier_id AS id, identifier_id AS label FROM cdp.identifiers;
ALTER TABLE lp ADD PRIMARY KEY (id);
ANALYZE lp_edges;
ANALYZE lp;
DO $$
DECLARE
	changed bigint;
	rounds  int := 0;
BEGIN
	LOOP
		UPDATE lp SET label = m.label
		FROM (SELECT e.a AS id, min(n.label) AS label
		      FROM lp_edges e JOIN lp n ON n.id = e.b GROUP BY e.a) m
		WHERE lp.id = m.id AND m.label < lp.label;
		GET DIAGNOSTICS changed = ROW_COUNT;
		rounds := rounds + 1;
		EXIT WHEN changed = 0;
	END LOOP;
	RAISE NOTICE 'label propagation: % rounds', rounds;
END
$$;
