\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit
-- cdp upgrade from 0.1.0 to 0.2.0.
--
-- Every change to the SQL surface (src/sql/*.sql) between the two releases,
-- written so that it runs on a 0.1.0 database: CREATE OR REPLACE FUNCTION for
-- a changed body, DROP and CREATE when a signature changes, ALTER TABLE for
-- columns, COMMENT ON again for a changed comment, pg_extension_config_dump
-- for a new table that keeps user data.  One section per area, headed by a
-- comment naming it.  test/upgrade.sh checks that a 0.1.0 database updated
-- with this script has exactly the schema of a fresh CREATE EXTENSION cdp.

-- Release: the bump to 0.2.0 itself changes no object.
