#!/usr/bin/env bash
# Usage data stored as json or text in databases of every kind of encoding:
# UTF8, LATIN1 (single-byte, lacks the euro sign and emoji) and SQL_ASCII
# (no characters past ASCII at all). Apps that write JSON with \u escapes
# (Python's json.dumps does by default) store characters in a reply's text
# that the database's encoding may not hold; jsonb cannot read such an
# escape, but the usage members are plain ASCII, so every reply below is
# billed: 100 prompt + 50 completion tokens of gpt-4o, $2.50 and $10.00 per
# million, = 0.00025 + 0.0005 = $0.00075 each. Backfill, trigger, merge and
# a customer named by a data member are checked in each database.
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
fail=0
check() { # what, got, expected
    if [[ $2 == "$3" ]]; then echo "ok: $1 = $2"; else echo "FAIL: $1: got '$2', expected '$3'"; fail=1; fi
}

for enc in UTF8 LATIN1 SQL_ASCII; do
    db=billing_enc_$(tr 'A-Z' 'a-z' <<<"$enc")
    dropdb --if-exists "$db" 2>/dev/null
    createdb -E "$enc" --locale=C -T template0 "$db"
    echo "== $enc"
    # Two tables, data as json and as text. Each gets five replies before
    # tracking (the backfill reads them) and five after (the trigger):
    # one with an emoji as a surrogate pair, one with a euro sign, one
    # with \u0000 (which jsonb refuses in any encoding), one with a lone
    # surrogate (JavaScript's JSON.stringify of text cut inside an emoji;
    # json takes it, jsonb does not); and a reply whose text holds an
    # escaped backslash before "u20ac", which is not an escape and must
    # stay as written.
    psql_q -d "$db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION billing;
CREATE TABLE public.as_json (id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                             content text NOT NULL, data json, created_at timestamptz NOT NULL);
CREATE TABLE public.as_text (LIKE public.as_json INCLUDING ALL);
ALTER TABLE public.as_text ALTER COLUMN data TYPE text;
CREATE FUNCTION pg_temp.fill(t regclass, step text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format($q$INSERT INTO %s (conversation_id, role, content, data, created_at) VALUES
      (%L, 'assistant', 'a', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"customer":"acme","text":"smile \ud83d\ude00"}', '2026-03-10 10:00+00'),
      (%L, 'assistant', 'b', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"text":"euro \u20ac"}', '2026-03-10 10:00+00'),
      (%L, 'assistant', 'c', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"text":"nul \u0000"}', '2026-03-10 10:00+00'),
      (%L, 'assistant', 'd', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"text":"not an escape \\u20ac"}', '2026-03-10 10:00+00'),
      (%L, 'assistant', 'e', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"text":"cut \ud83d"}', '2026-03-10 10:00+00')$q$,
      t, step || '-emoji', step || '-euro', step || '-nul', step || '-backslash', step || '-lone');
END
$f$;
SELECT pg_temp.fill('public.as_json', 'json-backfill');
SELECT pg_temp.fill('public.as_text', 'text-backfill');
SELECT billing.track_messages('public.as_json');
SELECT billing.track_messages('public.as_text');
SELECT billing.track_message_customers('public.as_json', data_member => 'customer');
SELECT pg_temp.fill('public.as_json', 'json-trigger');
SELECT pg_temp.fill('public.as_text', 'text-trigger');
SQL
    # 20 replies, each $0.00075: $0.015 in March, before and after merge.
    q_costs="SELECT count(*) || ' at ' || min(cost) || '..' || max(cost) || ', total ' || sum(cost)
               FROM billing.conversation_costs WHERE month = '2026-03-01'"
    check "$enc: conversations before merge" "$(psql_q -d "$db" -c "$q_costs")" "20 at 0.00075..0.00075, total 0.01500"
    check "$enc: problems" "$(psql_q -d "$db" -c "SELECT count(*) FROM billing.usage_problems")" "0"
    # The customer named beside the emoji: one conversation backfilled, one
    # written through the trigger, 2 x 0.00075.
    check "$enc: acme" "$(psql_q -d "$db" -c "SELECT openai_cost FROM billing.customer_costs
                                              WHERE customer = 'acme' AND month = '2026-03-01'")" "0.00150"
    psql_q -d "$db" -c "SELECT billing.merge()" >/dev/null
    check "$enc: conversations after merge" "$(psql_q -d "$db" -c "$q_costs")" "20 at 0.00075..0.00075, total 0.01500"
    # The text members as billing reads them: U+FFFD for \u0000 and the
    # lone surrogate in UTF8, "?" for what the encoding lacks elsewhere; the escaped backslash is
    # two characters, a backslash and "u", in every encoding.
    got=$(psql_q -d "$db" -c "SELECT string_agg(billing._jsonb_of_text(data) ->> 'text', ' | ' ORDER BY id)
                               FROM public.as_text WHERE conversation_id LIKE 'text-backfill%'")
    case $enc in
        UTF8) want=$'smile \U0001F600 | euro \u20ac | nul \ufffd | not an escape \\u20ac | cut \ufffd' ;;
        *)    want='smile ? | euro ? | nul ? | not an escape \u20ac | cut ?' ;;
    esac
    check "$enc: text as read" "$got" "$want"
    # A long reply in a script LATIN1 and SQL_ASCII lack (100 distinct CJK
    # escapes, \u4e00 to \u4e63): billed, $0.00075, its text read as 100
    # characters ("?" each where the encoding lacks them).
    psql_q -d "$db" >/dev/null <<'SQL'
INSERT INTO public.as_text (conversation_id, role, content, data, created_at)
SELECT 'cjk', 'assistant', 'x',
       '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"text":"'
       || (SELECT string_agg('\u' || to_hex(19968 + g), '' ORDER BY g) FROM generate_series(0, 99) AS g) || '"}',
       '2026-04-10 10:00+00';
SQL
    check "$enc: 100 CJK escapes" \
        "$(psql_q -d "$db" -c "SELECT c.cost || ' ' || length(billing._jsonb_of_text(m.data) ->> 'text')
                                      || ' ' || (billing._jsonb_of_text(m.data) ->> 'text' = repeat('?', 100))
                                 FROM billing.conversation_costs AS c JOIN public.as_text AS m USING (conversation_id)
                                WHERE c.conversation_id = 'cjk'")" \
        "0.00075 100 $([[ $enc == UTF8 ]] && echo false || echo true)"
    # Customers named by a data member, beside an emoji that LATIN1 lacks:
    # "\u00c9mile" and "\u00c8mile" stay two customers, 0.00075 and
    # 200 x 2.5/1M + 100 x 10/1M = 0.0015. SQL_ASCII holds neither letter:
    # both read "?mile", one customer of 0.00225.
    psql_q -d "$db" >/dev/null <<'SQL'
INSERT INTO public.as_json (conversation_id, role, content, data, created_at) VALUES
  ('emile-1', 'assistant', 'x', '{"model":"gpt-4o","prompt_tokens":100,"completion_tokens":50,"customer":"\u00c9mile","text":"ok \ud83d\udc4d"}', '2026-04-10 10:00+00'),
  ('emile-2', 'assistant', 'x', '{"model":"gpt-4o","prompt_tokens":200,"completion_tokens":100,"customer":"\u00c8mile","text":"ok \ud83d\udc4d"}', '2026-04-10 10:00+00');
SQL
    case $enc in
        SQL_ASCII) want_customers="?mile 0.00225" ;;
        *) want_customers=$(psql_q -d "$db" -c "SELECT U&'\00C8mile' || ' 0.0015, ' || U&'\00C9mile' || ' 0.00075'") ;;
    esac
    check "$enc: customers beside an emoji" \
        "$(psql_q -d "$db" -c "SELECT string_agg(customer || ' ' || openai_cost, ', ' ORDER BY customer COLLATE \"C\")
                                FROM billing.customer_costs WHERE month = '2026-04-01' AND customer IS NOT NULL")" \
        "$want_customers"
    # Text that is not JSON stays a listed problem, never a failed write.
    psql_q -d "$db" -c "INSERT INTO public.as_text (conversation_id, role, content, data, created_at)
                        VALUES ('broken', 'assistant', 'x', '{\"model\": \"gpt-4o\", ', '2026-03-10 10:00+00')" >/dev/null
    check "$enc: not JSON" "$(psql_q -d "$db" -c "SELECT detail FROM billing.usage_problems")" "data is not valid JSON"
    dropdb "$db"
done
exit $fail
