-- cdp: customer data platform inside PostgreSQL.
-- This file is built from src/sql/*.sql by the Makefile; edit the parts.
\echo Use "CREATE EXTENSION cdp" to load this file. \quit

COMMENT ON SCHEMA cdp IS 'cdp customer data platform: events, identities, scores, journeys and offers';
