// Genuine on-disk bytes captured from PostgreSQL 15 with pageinspect, as hex.
// Used by pg_numeric_test.cpp, jsonb_reader_test.cpp and usage_test.cpp.
// Do not edit by hand: to re-capture, start a throwaway cluster
// (source tools/cluster.sh && cluster_start), run the SQL below with psql,
// paste the hex, and stop it with cluster_stop. Table pages hold the rows in
// insertion order; the jsonb table spans two pages.
#pragma once

namespace billing_test {

// Produced by (PostgreSQL 15.20, x86-64, a fresh initdb cluster):
//
//   CREATE EXTENSION pageinspect;
//   CREATE TABLE num_fixture(label text, v numeric);
//   INSERT INTO num_fixture VALUES
//    ('zero','0'),('one','1'),('hundred','100'),('hundred_point_zero','100.0'),('one_point_five','1.5'),
//    ('minus_five','-5'),('int64_max','9223372036854775807'),('int64_max_plus_1','9223372036854775808'),
//    ('int64_min','-9223372036854775808'),('int64_min_minus_1','-9223372036854775809'),
//    ('one_e20','1e20'),('one_millionth','0.000001'),('nan','NaN'),('infinity','Infinity'),('minus_infinity','-Infinity'),
//    ('long_scale70', '123456789.123456789'::numeric(100,70)),
//    ('long_neg_scale64', '-1.5'::numeric(80,64)),
//    ('long_weight_big', '1e300'),('long_weight_small','1e-300'),
//    ('wide_4b_header', ('1' || repeat('0',299) || '.' || repeat('0',9) || '1')::numeric),
//    ('ten_thousand','10000'),('twelve_thousand_345_6789','12345.6789'),('zero_scale2','0.00'),('minus_0_5','-0.5');
//   SELECT label, encode((tuple_data_split('num_fixture'::regclass, t_data, t_infomask,
//                         t_infomask2, t_bits))[2], 'hex')
//   FROM generate_series(0, pg_relation_size('num_fixture') / 8192 - 1) blk,
//        heap_page_items(get_raw_page('num_fixture', blk::int)) h, num_fixture
//   WHERE num_fixture.ctid = format('(%s,%s)', blk, h.lp)::tid ORDER BY blk, lp;
//
// Each value is the attribute's bytes exactly as stored in the heap tuple,
// varlena header included (1-byte header up to 127 bytes, else 4-byte).
namespace numeric_hex {
// zero: 3 bytes
inline constexpr const char* zero = "070080";
// one: 5 bytes
inline constexpr const char* one = "0b00800100";
// hundred: 5 bytes
inline constexpr const char* hundred = "0b00806400";
// hundred_point_zero: 5 bytes
inline constexpr const char* hundred_point_zero = "0b80806400";
// one_point_five: 7 bytes
inline constexpr const char* one_point_five = "0f808001008813";
// minus_five: 5 bytes
inline constexpr const char* minus_five = "0b00a00500";
// int64_max: 13 bytes
inline constexpr const char* int64_max = "1b04809a032c0d70016515af16";
// int64_max_plus_1: 13 bytes
inline constexpr const char* int64_max_plus_1 = "1b04809a032c0d70016515b016";
// int64_min: 13 bytes
inline constexpr const char* int64_min = "1b04a09a032c0d70016515b016";
// int64_min_minus_1: 13 bytes
inline constexpr const char* int64_min_minus_1 = "1b04a09a032c0d70016515b116";
// one_e20: 5 bytes
inline constexpr const char* one_e20 = "0b05800100";
// one_millionth: 5 bytes
inline constexpr const char* one_millionth = "0b7e836400";
// nan: 3 bytes
inline constexpr const char* nan = "0700c0";
// infinity: 3 bytes
inline constexpr const char* infinity = "0700d0";
// minus_infinity: 3 bytes
inline constexpr const char* minus_infinity = "0700f0";
// long_scale70: 17 bytes
inline constexpr const char* long_scale70 = "234600020001002909851ad2042e162823";
// long_neg_scale64: 9 bytes
inline constexpr const char* long_neg_scale64 = "134040000001008813";
// long_weight_big: 7 bytes
inline constexpr const char* long_weight_big = "0f00004b000100";
// long_weight_small: 7 bytes
inline constexpr const char* long_weight_small = "0f2c01b5ff0100";
// wide_4b_header: 164 bytes
inline constexpr const char* wide_4b_header =
    "900200000a004a00e8030000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000006400";
// ten_thousand: 5 bytes
inline constexpr const char* ten_thousand = "0b01800100";
// twelve_thousand_345_6789: 9 bytes
inline constexpr const char* twelve_thousand_345_6789 = "13018201002909851a";
// zero_scale2: 3 bytes
inline constexpr const char* zero_scale2 = "070081";
// minus_0_5: 5 bytes
inline constexpr const char* minus_0_5 = "0bffa08813";
// Every fixture above, and its name, for tests that run over all of them.
inline constexpr const char* const kAll[] = {
    zero,
    one,
    hundred,
    hundred_point_zero,
    one_point_five,
    minus_five,
    int64_max,
    int64_max_plus_1,
    int64_min,
    int64_min_minus_1,
    one_e20,
    one_millionth,
    nan,
    infinity,
    minus_infinity,
    long_scale70,
    long_neg_scale64,
    long_weight_big,
    long_weight_small,
    wide_4b_header,
    ten_thousand,
    twelve_thousand_345_6789,
    zero_scale2,
    minus_0_5,
};
inline constexpr const char* const kAllNames[] = {
    "zero",
    "one",
    "hundred",
    "hundred_point_zero",
    "one_point_five",
    "minus_five",
    "int64_max",
    "int64_max_plus_1",
    "int64_min",
    "int64_min_minus_1",
    "one_e20",
    "one_millionth",
    "nan",
    "infinity",
    "minus_infinity",
    "long_scale70",
    "long_neg_scale64",
    "long_weight_big",
    "long_weight_small",
    "wide_4b_header",
    "ten_thousand",
    "twelve_thousand_345_6789",
    "zero_scale2",
    "minus_0_5",
};
}  // namespace numeric_hex

// Produced by (PostgreSQL 15.20, x86-64, a fresh initdb cluster):
//
//   CREATE EXTENSION pageinspect;
//   CREATE TABLE jsonb_fixture(label text, j jsonb);
//   INSERT INTO jsonb_fixture VALUES
//    ('seed_usage', '{"tokens":150,"prompt_tokens":100,"completion_tokens":50,"model":"gpt-4o-mini"}'),
//    ('openai_cached_details', '{"model":"gpt-4o","prompt_tokens":1000000,"completion_tokens":2000,"total_tokens":1002000,"prompt_tokens_details":{"cached_tokens":400000}}'),
//    ('responses_api', '{"model":"gpt-4.1","input_tokens":1200,"output_tokens":300,"total_tokens":1500,"input_tokens_details":{"cached_tokens":200},"output_tokens_details":{"reasoning_tokens":100}}'),
//    ('nested_usage', '{"id":"chatcmpl-1","model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'),
//    ('nested_usage_inner_model', '{"usage":{"model":"gpt-4o","prompt_tokens":7,"completion_tokens":3}}'),
//    ('nested_usage_ignored', '{"prompt_tokens":1,"completion_tokens":2,"usage":{"prompt_tokens":70,"completion_tokens":30}}'),
//    ('outer_null_nested_alias', '{"input_tokens":null,"usage":{"input_tokens":5,"output_tokens":1}}'),
//    ('string_token', '{"prompt_tokens":"12a","completion_tokens":5,"model":"gpt-4o"}'),
//    ('bool_token', '{"prompt_tokens":true,"completion_tokens":5}'),
//    ('null_tokens', '{"prompt_tokens":null,"completion_tokens":5,"model":null}'),
//    ('float_token', '{"prompt_tokens":1.5,"completion_tokens":5}'),
//    ('integral_float_token', '{"prompt_tokens":100.0,"completion_tokens":1e2}'),
//    ('negative_token', '{"prompt_tokens":-5,"completion_tokens":5}'),
//    ('bigint_max_token', '{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807}'),
//    ('bigint_overflow_token', '{"prompt_tokens":9223372036854775808,"completion_tokens":1}'),
//    ('total_only', '{"tokens":150,"model":"gpt-4o"}'),
//    ('total_tokens_only', '{"total_tokens":42}'),
//    ('cached_exceeds_prompt', '{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":11}}'),
//    ('top_level_cached', '{"prompt_tokens":100,"completion_tokens":1,"cached_tokens":40}'),
//    ('preferred_and_alias', '{"input_tokens":1,"prompt_tokens":2,"output_tokens":3,"completion_tokens":4,"tokens":5,"total_tokens":6}'),
//    ('model_number', '{"model":4,"prompt_tokens":1,"completion_tokens":1}'),
//    ('container_tokens', '{"prompt_tokens":[1],"completion_tokens":{"a":1}}'),
//    ('unicode_model', '{"model":"gpt-4o-ünïcødé","prompt_tokens":1,"completion_tokens":1}'),
//    ('user_message', '{"role":"user","content":"hello"}'),
//    ('usage_not_object', '{"usage":"none","model":"gpt-4o"}'),
//    ('array_root', '[1,2,3]'),
//    ('array_of_objects', '[{"prompt_tokens":1,"completion_tokens":1}]'),
//    ('empty_array', '[]'),
//    ('scalar_number', '42'),
//    ('scalar_string', '"gpt-4o"'),
//    ('scalar_true', 'true'),
//    ('scalar_false', 'false'),
//    ('scalar_null', 'null'),
//    ('empty_object', '{}'),
//    ('many_keys', (SELECT jsonb_object_agg(format('k%s', lpad(i::text, 2, '0')), i) FROM generate_series(0, 39) i)
//                  || '{"model":"gpt-4o","prompt_tokens":1234,"completion_tokens":567}'::jsonb),
//    ('long_strings', jsonb_build_object('model', repeat('m', 300), 'note', repeat('n', 1000), 'prompt_tokens', 11, 'completion_tokens', 22)),
//    ('numbers_after_odd_strings', '{"a":"x","b":1,"cc":"yyy","dd":2,"model":"q"}'),
//    ('outer_null_nested_preferred', '{"prompt_tokens":null,"usage":{"prompt_tokens":5,"completion_tokens":1}}'),
//    ('cached_top_and_detail', '{"prompt_tokens":100,"completion_tokens":1,"cached_tokens":40,"prompt_tokens_details":{"cached_tokens":30}}'),
//    ('cached_without_prompt', '{"completion_tokens":5,"cached_tokens":1}'),
//    ('both_details', '{"prompt_tokens":100,"completion_tokens":1,"input_tokens_details":{"cached_tokens":10},"prompt_tokens_details":{"cached_tokens":20}}'),
//    ('total_invalid_with_split', '{"prompt_tokens":1,"completion_tokens":1,"tokens":"x"}'),
//    ('long_string_token', '{"prompt_tokens":"0123456789012345678901234567890123456789ABCDEFGHIJ"}'),
//    ('utf8_string_token', '{"prompt_tokens":"aéééééééééééééééééééééééé"}'),
//    ('model_in_both', '{"model":"outer","usage":{"model":"inner","prompt_tokens":1,"completion_tokens":1}}'),
//    ('model_null_outer', '{"model":null,"usage":{"model":"inner","prompt_tokens":1,"completion_tokens":1}}'),
//    ('usage_array', '{"usage":[1],"model":"gpt-4o"}'),
//    ('negative_cached', '{"prompt_tokens":1,"completion_tokens":1,"cached_tokens":-1}'),
//    ('completion_only', '{"completion_tokens":7}'),
//    ('zero_tokens', '{"prompt_tokens":0,"completion_tokens":0,"model":"gpt-4o"}'),
//    ('float_cached_detail', '{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":2.5}}'),
//    ('below_bigint_min', '{"prompt_tokens":-9223372036854775809,"completion_tokens":1}'),
//    ('bigint_min', '{"prompt_tokens":-9223372036854775808,"completion_tokens":1}'),
//    ('cached_equals_prompt', '{"prompt_tokens":9223372036854775807,"completion_tokens":0,"cached_tokens":9223372036854775807}');
//   SELECT label, encode((tuple_data_split('jsonb_fixture'::regclass, t_data, t_infomask,
//                         t_infomask2, t_bits))[2], 'hex')
//   FROM generate_series(0, pg_relation_size('jsonb_fixture') / 8192 - 1) blk,
//        heap_page_items(get_raw_page('jsonb_fixture', blk::int)) h, jsonb_fixture
//   WHERE jsonb_fixture.ctid = format('(%s,%s)', blk, h.lp)::tid ORDER BY blk, lp;
//
// Each value is the attribute's bytes exactly as stored in the heap tuple,
// varlena header included (1-byte header up to 127 bytes, else 4-byte).
namespace jsonb_hex {
// seed_usage: 113 bytes
inline constexpr const char* seed_usage =
    "e30400002005000080060000000d000000110000000b0000000800001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f2d6d696e6920000000008096"
    "0020000000008064002000000000803200";
// openai_cached_details: 188 bytes
inline constexpr const char* openai_cached_details =
    "f002000005000020050000800c0000000d0000001100000015000000060000000c0000100a0000100800001024000050"
    "6d6f64656c746f74616c5f746f6b656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e7370"
    "726f6d70745f746f6b656e735f64657461696c736770742d346f00002800000001806400d00700002000000001806400"
    "200000000080d007010000200d0000800b0000106361636865645f746f6b656e730000002000000001802800";
// responses_api: 244 bytes
inline constexpr const char* responses_api =
    "d003000006000020050000800c0000000c0000000d0000001400000015000000070000000a0000100800001008000010"
    "24000050240000506d6f64656c696e7075745f746f6b656e73746f74616c5f746f6b656e736f75747075745f746f6b65"
    "6e73696e7075745f746f6b656e735f64657461696c736f75747075745f746f6b656e735f64657461696c736770742d34"
    "2e310000200000000080b004200000000080dc052000000000802c01010000200d0000800b0000106361636865645f74"
    "6f6b656e73000000200000000080c800010000201000008008000010726561736f6e696e675f746f6b656e7320000000"
    "00806400";
// nested_usage: 172 bytes
inline constexpr const char* nested_usage =
    "b0020000030000200200008005000000050000000a000000160000006000005069646d6f64656c757361676563686174"
    "636d706c2d316770742d346f2d6d696e692d323032342d30372d3138030000200c0000800d000000110000000a000010"
    "0800001008000010746f74616c5f746f6b656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b65"
    "6e7300002000000000800f002000000000800a002000000000800500";
// nested_usage_inner_model: 109 bytes
inline constexpr const char* nested_usage_inner_model =
    "db01000020050000805b000050757361676500000003000020050000800d00000011000000060000000b000010080000"
    "106d6f64656c70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f000000200000"
    "00008007002000000000800300";
// nested_usage_ignored: 152 bytes
inline constexpr const char* nested_usage_ignored =
    "6002000003000020050000800d00000011000000450000500800001008000010757361676570726f6d70745f746f6b65"
    "6e73636f6d706c6574696f6e5f746f6b656e7300020000200d000080110000000a0000100800001070726f6d70745f74"
    "6f6b656e73636f6d706c6574696f6e5f746f6b656e73000020000000008046002000000000801e002000000000800100"
    "2000000000800200";
// outer_null_nested_alias: 105 bytes
inline constexpr const char* outer_null_nested_alias =
    "d302000020050000800c00000043000050000000407573616765696e7075745f746f6b656e73000000020000200c0000"
    "800d0000000b00001008000010696e7075745f746f6b656e736f75747075745f746f6b656e7300000020000000008005"
    "002000000000800100";
// string_token: 81 bytes
inline constexpr const char* string_token =
    "a303000020050000800d000000110000000600000003000000080000106d6f64656c70726f6d70745f746f6b656e7363"
    "6f6d706c6574696f6e5f746f6b656e736770742d346f3132612000000000800500";
// bool_token: 61 bytes
inline constexpr const char* bool_token =
    "7b020000200d00008011000000000000300a00001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300002000000000800500";
// null_tokens: 73 bytes
inline constexpr const char* null_tokens =
    "9303000020050000800d000000110000000000004000000040090000106d6f64656c70726f6d70745f746f6b656e7363"
    "6f6d706c6574696f6e5f746f6b656e73002000000000800500";
// float_token: 73 bytes
inline constexpr const char* float_token =
    "93020000200d000080110000000c0000100a00001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300002800000080800100881300002000000000800500";
// integral_float_token: 69 bytes
inline constexpr const char* integral_float_token =
    "8b020000200d000080110000000a0000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e73000020000000808064002000000000806400";
// negative_token: 69 bytes
inline constexpr const char* negative_token =
    "8b020000200d000080110000000a0000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300002000000000a005002000000000800500";
// bigint_max_token: 85 bytes
inline constexpr const char* bigint_max_token =
    "ab020000200d00008011000000120000101000001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300004000000004809a032c0d70016515af164000000004809a032c0d70016515af16";
// bigint_overflow_token: 77 bytes
inline constexpr const char* bigint_overflow_token =
    "9b020000200d00008011000000120000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300004000000004809a032c0d70016515b0162000000000800100";
// total_only: 49 bytes
inline constexpr const char* total_only =
    "63020000200500008006000000060000000b0000106d6f64656c746f6b656e736770742d346f00000020000000008096"
    "00";
// total_tokens_only: 33 bytes
inline constexpr const char* total_tokens_only = "43010000200c00008008000010746f74616c5f746f6b656e732000000000802a00";
// cached_exceeds_prompt: 136 bytes
inline constexpr const char* cached_exceeds_prompt =
    "20020000030000200d000080110000001500000009000010080000102400005070726f6d70745f746f6b656e73636f6d"
    "706c6574696f6e5f746f6b656e7370726f6d70745f746f6b656e735f64657461696c73002000000000800a0020000000"
    "00800100010000200d0000800b0000106361636865645f746f6b656e730000002000000000800b00";
// top_level_cached: 97 bytes
inline constexpr const char* top_level_cached =
    "c3030000200d0000800d000000110000000900001008000010080000106361636865645f746f6b656e7370726f6d7074"
    "5f746f6b656e73636f6d706c6574696f6e5f746f6b656e73002000000000802800200000000080640020000000008001"
    "00";
// preferred_and_alias: 180 bytes
inline constexpr const char* preferred_and_alias =
    "d002000006000020060000800c0000000c0000000d0000000d000000110000000b000010080000100800001008000010"
    "0800001008000010746f6b656e73696e7075745f746f6b656e73746f74616c5f746f6b656e736f75747075745f746f6b"
    "656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e73000000200000000080050020000000"
    "008001002000000000800600200000000080030020000000008002002000000000800400";
// model_number: 89 bytes
inline constexpr const char* model_number =
    "b303000020050000800d000000110000000900001008000010080000106d6f64656c70726f6d70745f746f6b656e7363"
    "6f6d706c6574696f6e5f746f6b656e7300200000000080040020000000008001002000000000800100";
// container_tokens: 93 bytes
inline constexpr const char* container_tokens =
    "bb020000200d00008011000000120000501800005070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300000100004008000090200000000080010001000020010000800b000010610000002000000000800100";
// unicode_model: 101 bytes
inline constexpr const char* unicode_model =
    "cb03000020050000800d00000011000000120000000b000010080000106d6f64656c70726f6d70745f746f6b656e7363"
    "6f6d706c6574696f6e5f746f6b656e736770742d346f2dc3bc6ec3af63c3b864c3a90000002000000000800100200000"
    "0000800100";
// user_message: 41 bytes
inline constexpr const char* user_message = "530200002004000080070000000400000005000000726f6c65636f6e74656e747573657268656c6c6f";
// usage_not_object: 41 bytes
inline constexpr const char* usage_not_object = "5302000020050000800500000006000000040000006d6f64656c75736167656770742d346f6e6f6e65";
// array_root: 41 bytes
inline constexpr const char* array_root = "5303000040080000900800001008000010200000000080010020000000008002002000000000800300";
// array_of_objects: 77 bytes
inline constexpr const char* array_of_objects =
    "9b01000040440000d0020000200d000080110000000a0000100800001070726f6d70745f746f6b656e73636f6d706c65"
    "74696f6e5f746f6b656e73000020000000008001002000000000800100";
// empty_array: 5 bytes
inline constexpr const char* empty_array = "0b00000040";
// scalar_number: 17 bytes
inline constexpr const char* scalar_number = "2301000050080000902000000000802a00";
// scalar_string: 15 bytes
inline constexpr const char* scalar_string = "1f01000050060000806770742d346f";
// scalar_true: 9 bytes
inline constexpr const char* scalar_true = "1301000050000000b0";
// scalar_false: 9 bytes
inline constexpr const char* scalar_false = "1301000050000000a0";
// scalar_null: 9 bytes
inline constexpr const char* scalar_null = "1301000050000000c0";
// empty_object: 5 bytes
inline constexpr const char* empty_object = "0b00000020";
// many_keys: 852 bytes
inline constexpr const char* many_keys =
    "500d00002b00002003000080030000000300000003000000030000000300000003000000030000000300000003000000"
    "030000000300000003000000030000000300000003000000030000000300000003000000030000000300000003000000"
    "030000000300000003000000030000000300000003000000030000000300000003000000030000006300008003000000"
    "030000000300000003000000030000000300000003000000050000000d00000011000000070000100a00001008000010"
    "080000100800001008000010080000100800001008000010080000100800001008000010080000100800001008000010"
    "0800001008000010080000100800001008000010080000104c0100900800001008000010080000100800001008000010"
    "080000100800001008000010080000100800001008000010080000100800001008000010080000100800001008000010"
    "08000010060000000a000010080000106b30306b30316b30326b30336b30346b30356b30366b30376b30386b30396b31"
    "306b31316b31326b31336b31346b31356b31366b31376b31386b31396b32306b32316b32326b32336b32346b32356b32"
    "366b32376b32386b32396b33306b33316b33326b33336b33346b33356b33366b33376b33386b33396d6f64656c70726f"
    "6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e73001800000000800000200000000080010020000000"
    "008002002000000000800300200000000080040020000000008005002000000000800600200000000080070020000000"
    "0080080020000000008009002000000000800a002000000000800b002000000000800c002000000000800d0020000000"
    "00800e002000000000800f00200000000080100020000000008011002000000000801200200000000080130020000000"
    "008014002000000000801500200000000080160020000000008017002000000000801800200000000080190020000000"
    "00801a002000000000801b002000000000801c002000000000801d002000000000801e002000000000801f0020000000"
    "008020002000000000802100200000000080220020000000008023002000000000802400200000000080250020000000"
    "0080260020000000008027006770742d346f0000200000000080d2042000000000803702";
// long_strings: 1396 bytes
inline constexpr const char* long_strings =
    "d01500000400002004000080050000000d00000011000000e80300002c01000009000010080000106e6f74656d6f6465"
    "6c70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
    "6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d"
    "6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d002000000000800b0020000000"
    "00801600";
// numbers_after_odd_strings: 78 bytes
inline constexpr const char* numbers_after_odd_strings =
    "9d0500002001000080010000000200000002000000050000000100000008000010030000000900001001000000616263"
    "6364646d6f64656c78200000000080010079797900200000000080020071";
// outer_null_nested_preferred: 109 bytes
inline constexpr const char* outer_null_nested_preferred =
    "db02000020050000800d0000004600005000000040757361676570726f6d70745f746f6b656e730000020000200d0000"
    "80110000000a0000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e730000200000"
    "00008005002000000000800100";
// cached_top_and_detail: 164 bytes
inline constexpr const char* cached_top_and_detail =
    "90020000040000200d0000800d0000001100000015000000080000100800001008000010240000506361636865645f74"
    "6f6b656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e7370726f6d70745f746f6b656e73"
    "5f64657461696c73200000000080280020000000008064002000000000800100010000200d0000800b00001063616368"
    "65645f746f6b656e730000002000000000801e00";
// cached_without_prompt: 69 bytes
inline constexpr const char* cached_without_prompt =
    "8b020000200d000080110000000a000010080000106361636865645f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e73000020000000008001002000000000800500";
// both_details: 200 bytes
inline constexpr const char* both_details =
    "20030000040000200d0000801100000014000000150000000900001008000010240000502400005070726f6d70745f74"
    "6f6b656e73636f6d706c6574696f6e5f746f6b656e73696e7075745f746f6b656e735f64657461696c7370726f6d7074"
    "5f746f6b656e735f64657461696c730020000000008064002000000000800100010000200d0000800b00001063616368"
    "65645f746f6b656e730000002000000000800a00010000200d0000800b0000106361636865645f746f6b656e73000000"
    "2000000000801400";
// total_invalid_with_split: 85 bytes
inline constexpr const char* total_invalid_with_split =
    "ab03000020060000800d00000011000000010000000b00001008000010746f6b656e7370726f6d70745f746f6b656e73"
    "636f6d706c6574696f6e5f746f6b656e737800000020000000008001002000000000800100";
// long_string_token: 76 bytes
inline constexpr const char* long_string_token =
    "99010000200d0000803200000070726f6d70745f746f6b656e7330313233343536373839303132333435363738393031"
    "3233343536373839303132333435363738394142434445464748494a";
// utf8_string_token: 75 bytes
inline constexpr const char* utf8_string_token =
    "97010000200d0000803100000070726f6d70745f746f6b656e7361c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3"
    "a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9";
// model_in_both: 121 bytes
inline constexpr const char* model_in_both =
    "f302000020050000800500000005000000550000506d6f64656c75736167656f757465720003000020050000800d0000"
    "00110000000500000008000010080000106d6f64656c70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f"
    "6b656e73696e6e657220000000008001002000000000800100";
// model_null_outer: 117 bytes
inline constexpr const char* model_null_outer =
    "eb02000020050000800500000000000040560000506d6f64656c7573616765000003000020050000800d000000110000"
    "000500000008000010080000106d6f64656c70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e73"
    "696e6e657220000000008001002000000000800100";
// usage_array: 53 bytes
inline constexpr const char* usage_array =
    "6b02000020050000800500000006000000100000506d6f64656c75736167656770742d346f0100004008000090200000"
    "0000800100";
// negative_cached: 97 bytes
inline constexpr const char* negative_cached =
    "c3030000200d0000800d000000110000000900001008000010080000106361636865645f746f6b656e7370726f6d7074"
    "5f746f6b656e73636f6d706c6574696f6e5f746f6b656e73002000000000a00100200000000080010020000000008001"
    "00";
// completion_only: 41 bytes
inline constexpr const char* completion_only = "5301000020110000800b000010636f6d706c6574696f6e5f746f6b656e730000002000000000800700";
// zero_tokens: 87 bytes
inline constexpr const char* zero_tokens =
    "af03000020050000800d000000110000000600000009000010080000106d6f64656c70726f6d70745f746f6b656e7363"
    "6f6d706c6574696f6e5f746f6b656e736770742d346f0000001800000000800000180000000080";
// float_cached_detail: 138 bytes
inline constexpr const char* float_cached_detail =
    "28020000030000200d000080110000001500000009000010080000102600005070726f6d70745f746f6b656e73636f6d"
    "706c6574696f6e5f746f6b656e7370726f6d70745f746f6b656e735f64657461696c73002000000000800a0020000000"
    "00800100010000200d0000800d0000106361636865645f746f6b656e7300000028000000808002008813";
// below_bigint_min: 77 bytes
inline constexpr const char* below_bigint_min =
    "9b020000200d00008011000000120000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300004000000004a09a032c0d70016515b1162000000000800100";
// bigint_min: 77 bytes
inline constexpr const char* bigint_min =
    "9b020000200d00008011000000120000100800001070726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b"
    "656e7300004000000004a09a032c0d70016515b0162000000000800100";
// cached_equals_prompt: 111 bytes
inline constexpr const char* cached_equals_prompt =
    "df030000200d0000800d000000110000001100001010000010060000106361636865645f746f6b656e7370726f6d7074"
    "5f746f6b656e73636f6d706c6574696f6e5f746f6b656e73004000000004809a032c0d70016515af164000000004809a"
    "032c0d70016515af16180000000080";
// Every fixture above, and its name, for tests that run over all of them.
inline constexpr const char* const kAll[] = {
    seed_usage,
    openai_cached_details,
    responses_api,
    nested_usage,
    nested_usage_inner_model,
    nested_usage_ignored,
    outer_null_nested_alias,
    string_token,
    bool_token,
    null_tokens,
    float_token,
    integral_float_token,
    negative_token,
    bigint_max_token,
    bigint_overflow_token,
    total_only,
    total_tokens_only,
    cached_exceeds_prompt,
    top_level_cached,
    preferred_and_alias,
    model_number,
    container_tokens,
    unicode_model,
    user_message,
    usage_not_object,
    array_root,
    array_of_objects,
    empty_array,
    scalar_number,
    scalar_string,
    scalar_true,
    scalar_false,
    scalar_null,
    empty_object,
    many_keys,
    long_strings,
    numbers_after_odd_strings,
    outer_null_nested_preferred,
    cached_top_and_detail,
    cached_without_prompt,
    both_details,
    total_invalid_with_split,
    long_string_token,
    utf8_string_token,
    model_in_both,
    model_null_outer,
    usage_array,
    negative_cached,
    completion_only,
    zero_tokens,
    float_cached_detail,
    below_bigint_min,
    bigint_min,
    cached_equals_prompt,
};
inline constexpr const char* const kAllNames[] = {
    "seed_usage",
    "openai_cached_details",
    "responses_api",
    "nested_usage",
    "nested_usage_inner_model",
    "nested_usage_ignored",
    "outer_null_nested_alias",
    "string_token",
    "bool_token",
    "null_tokens",
    "float_token",
    "integral_float_token",
    "negative_token",
    "bigint_max_token",
    "bigint_overflow_token",
    "total_only",
    "total_tokens_only",
    "cached_exceeds_prompt",
    "top_level_cached",
    "preferred_and_alias",
    "model_number",
    "container_tokens",
    "unicode_model",
    "user_message",
    "usage_not_object",
    "array_root",
    "array_of_objects",
    "empty_array",
    "scalar_number",
    "scalar_string",
    "scalar_true",
    "scalar_false",
    "scalar_null",
    "empty_object",
    "many_keys",
    "long_strings",
    "numbers_after_odd_strings",
    "outer_null_nested_preferred",
    "cached_top_and_detail",
    "cached_without_prompt",
    "both_details",
    "total_invalid_with_split",
    "long_string_token",
    "utf8_string_token",
    "model_in_both",
    "model_null_outer",
    "usage_array",
    "negative_cached",
    "completion_only",
    "zero_tokens",
    "float_cached_detail",
    "below_bigint_min",
    "bigint_min",
    "cached_equals_prompt",
};
}  // namespace jsonb_hex

}  // namespace billing_test
