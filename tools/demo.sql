-- PLACEHOLDER: the real demo data/queries are still to be written; replace
-- this file.  Run via tools/demo.sh after CREATE EXTENSION billing.
SELECT billing.openai_cost('gpt-4o', 100, 50);
