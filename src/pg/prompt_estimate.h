// The prompt estimate of a reply stored without usage, read in C by the
// tracking trigger (src/pg/track_row.cpp) instead of by the PL/pgSQL full
// body: the same figure, from the same rows, with no SQL statement.
#pragma once

#include "postgres_headers.h"

extern "C" {
#include "commands/trigger.h"
}

namespace billing::pg {

// The trigger's column numbers in the tracked table (its UPDATE OF list).
struct ReplyColumns {
  AttrNumber id;
  AttrNumber conversation;
  AttrNumber content;
  AttrNumber created_at;
  AttrNumber role;
};

// The full body's estimate of the reply `td` fires for:
//   sum(billing._estimated_tokens(content)) over the messages m of its
//   conversation that come before it (billing._earlier_condition): earlier;
//   at the same time, with integer ids the smaller id, with other ids a
//   message that is not a reply (the question stored with it in one
//   transaction), then another reply whose id sorts first,
// read here through a btree index on the conversation column of each table
// that query reads (the table, or every leaf partition of a partitioned
// one), with the snapshot the full
// body's query would have. True with *tokens; false when the full body must
// read it (a table without such an index, a foreign partition, a content
// that is not text, an id without a value, a figure past bigint).
bool estimate_prompt(const TriggerData* td, const ReplyColumns& columns, int64* tokens);

// Stores the estimate for message `message_key` (billing._key of its id) of
// tracked table `source_id` in billing.estimated_prompts of schema
// `schema`. False, having written nothing, when the message already has a
// row there (committed or not: the full body replaces it) or the table is
// not the plain one this writes.
bool store_prompt_estimate(Oid schema, int16 source_id, Datum message_key, int64 tokens);

// The same for a reply on a shard of a tracked Citus distributed table: in
// `estimates_shard`, the shard of billing.citus_estimates_N beside the
// messages' shard (columns conversation, source_id, message_id,
// prompt_tokens; key (conversation, message_id)), where the full body's
// INSERT would have been routed.
bool store_citus_prompt_estimate(Oid estimates_shard, Oid conversation_type, Datum conversation, int16 source_id,
                                 Datum message_key, int64 tokens);

}  // namespace billing::pg
