#!/usr/bin/env bash
# Re-captures the seed corpora that come from PostgreSQL itself: the exact
# on-disk bytes of jsonb containers (corpus/fuzz_usage) and numeric datums
# (corpus/fuzz_pg_numeric), cut out of heap tuples with pageinspect.
#
#   bash test/fuzz/capture_corpus.sh        # from the repo root
#
# Starts and stops its own throwaway cluster (tools/cluster.sh). Existing
# captured files (pg-*) are replaced; hand-written seeds are left alone.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
corpus=$PWD/test/fuzz/corpus

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
trap cluster_stop EXIT
# shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
cluster_start

psql() { command psql -X -v ON_ERROR_STOP=1 -q "$@"; }

psql <<'SQL'
CREATE EXTENSION IF NOT EXISTS pageinspect;
CREATE TABLE jsonb_seed(label text, j jsonb);
-- PLAIN storage: every value stays inline and uncompressed in the heap tuple.
ALTER TABLE jsonb_seed ALTER COLUMN j SET STORAGE PLAIN;
INSERT INTO jsonb_seed VALUES
 ('chat_usage', '{"model":"gpt-4o-mini","prompt_tokens":100,"completion_tokens":50,"tokens":150}'),
 ('cached_details', '{"model":"gpt-4o","prompt_tokens":1000000,"completion_tokens":2000,"total_tokens":1002000,"prompt_tokens_details":{"cached_tokens":400000}}'),
 ('responses_api', '{"model":"gpt-4.1","input_tokens":1200,"output_tokens":300,"total_tokens":1500,"input_tokens_details":{"cached_tokens":200},"output_tokens_details":{"reasoning_tokens":100}}'),
 ('nested_usage', '{"id":"chatcmpl-1","model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'),
 ('nested_usage_model', '{"usage":{"model":"gpt-4o","prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}'),
 ('top_level_cached', '{"prompt_tokens":100,"completion_tokens":1,"cached_tokens":40}'),
 ('cached_exceeds', '{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":11}}'),
 ('string_token', '{"prompt_tokens":"12a","completion_tokens":5,"model":"gpt-4o"}'),
 ('bool_null_tokens', '{"prompt_tokens":true,"completion_tokens":null,"model":null}'),
 ('fraction', '{"prompt_tokens":1.5,"completion_tokens":100.000}'),
 ('exponent', '{"prompt_tokens":1e2,"completion_tokens":1e-2,"cached_tokens":0e10}'),
 ('negative', '{"prompt_tokens":-5,"completion_tokens":5}'),
 ('bigint_edges', '{"prompt_tokens":9223372036854775807,"completion_tokens":-9223372036854775808,"cached_tokens":9223372036854775808}'),
 ('special_numbers', '{"prompt_tokens":0.000000000000000000001,"completion_tokens":1e300}'),
 ('total_only', '{"total_tokens":42,"model":"o1-2024-12-17"}'),
 ('model_not_string', '{"model":["gpt-4o"],"prompt_tokens":1,"completion_tokens":1}'),
 ('containers_as_tokens', '{"prompt_tokens":[1],"completion_tokens":{"a":1}}'),
 ('unicode', '{"model":" OpenAI/GPT-4o-ünïcødé ","prompt_tokens":1,"completion_tokens":1,"note":"tab\tq\"b\\"}'),
 ('user_message', '{"role":"user","content":"hello"}'),
 ('usage_not_object', '{"usage":"none","model":"gpt-4o"}'),
 ('many_keys', (SELECT jsonb_object_agg(format('k%s', lpad(i::text, 2, '0')), i) FROM generate_series(0, 39) i)
               || '{"model":"gpt-4o","prompt_tokens":1234,"completion_tokens":567}'::jsonb),
 ('many_strings', (SELECT jsonb_object_agg(format('s%s', i), repeat('x', i)) FROM generate_series(0, 35) i)
               || '{"input_tokens":3,"output_tokens":4}'::jsonb),
 ('deep', '{"usage":{"usage":{"usage":{"prompt_tokens":1}}},"a":[[[[{"b":[{}]}]]]]}'),
 ('array_root', '[1,"two",null,true,false,{"prompt_tokens":1},[]]'),
 ('empty_array', '[]'),
 ('empty_object', '{}'),
 ('scalar_number', '42'),
 ('scalar_big_number', '-123456789012345678901234567890.5'),
 ('scalar_string', '"gpt-4o"'),
 ('scalar_true', 'true'),
 ('scalar_false', 'false'),
 ('scalar_null', 'null');

CREATE TABLE numeric_seed(label text, v numeric);
INSERT INTO numeric_seed VALUES
 ('zero','0'),('one','1'),('hundred_point_zero','100.0'),('one_point_five','1.5'),('minus_five','-5'),
 ('int64_max','9223372036854775807'),('int64_max_plus_1','9223372036854775808'),('int64_min','-9223372036854775808'),
 ('one_e20','1e20'),('one_millionth','0.000001'),('atto','0.000000000000000001'),('below_atto','0.0000000000000000001'),
 ('nan','NaN'),('infinity','Infinity'),('minus_infinity','-Infinity'),
 ('long_scale70', '123456789.123456789'::numeric(100,70)),('long_neg_scale64', '-1.5'::numeric(80,64)),
 ('long_weight_big', '1e300'),('long_weight_small','1e-300'),
 ('wide_4b_header', ('1' || repeat('0',299) || '.' || repeat('0',9) || '1')::numeric),
 ('twelve_thousand_345_6789','12345.6789'),('zero_scale2','0.00'),('minus_0_5','-0.5'),
 ('price','2.500000000000'),('ten_pow_18','1000000000000000000');
SQL

# label <TAB> hex of the attribute's bytes (varlena header included).
dump() {  # dump TABLE
    psql -At -F $'\t' -c "
      SELECT t.label, encode((tuple_data_split('$1'::regclass, h.t_data, h.t_infomask,
                                                h.t_infomask2, h.t_bits))[2], 'hex')
      FROM generate_series(0, pg_relation_size('$1') / 8192 - 1) blk,
           heap_page_items(get_raw_page('$1', blk::int)) h, $1 t
      WHERE t.ctid = format('(%s,%s)', blk, h.lp)::tid
      ORDER BY blk, h.lp"
}

# Strip the varlena header (1-byte: low bit set; else 4 bytes) to leave the
# jsonb container, which is what read_usage_fields() is given.
mkdir -p "$corpus/fuzz_usage" "$corpus/fuzz_pg_numeric"
rm -f "$corpus"/fuzz_usage/pg-* "$corpus"/fuzz_pg_numeric/pg-*
dump jsonb_seed | while IFS=$'\t' read -r label hex; do
    perl -e '
        my $b = pack("H*", $ARGV[0]);
        my $skip = (ord(substr($b, 0, 1)) & 1) ? 1 : 4;
        print substr($b, $skip);' "$hex" >"$corpus/fuzz_usage/pg-$label"
done

# fuzz_pg_numeric inputs are one scale byte followed by the numeric datum
# (header included); each value is stored at the scales the extension uses.
dump numeric_seed | while IFS=$'\t' read -r label hex; do
    for scale in 0 6 18; do
        perl -e 'print chr($ARGV[1]), pack("H*", $ARGV[0])' "$hex" "$scale" \
            >"$corpus/fuzz_pg_numeric/pg-$label-s$scale"
    done
done

echo "captured: $(find "$corpus/fuzz_usage" -name 'pg-*' | wc -l) jsonb," \
     "$(find "$corpus/fuzz_pg_numeric" -name 'pg-*' | wc -l) numeric seeds"
