-- billing 0.3 -> 0.4: real app tables, any date, and no single row, table
-- or role that can stop billing for everyone.
--
-- (The list of what this update does is kept at the top as it grows; see
-- CHANGELOG.md.)

\echo Use "ALTER EXTENSION billing UPDATE TO '0.4'" to load this file. \quit
