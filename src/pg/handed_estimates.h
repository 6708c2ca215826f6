// Frozen prompt estimates handed from a deleted reply to the same reply
// inserted later in the same transaction: the archive move
// (`WITH moved AS (DELETE ... RETURNING *) INSERT INTO archive SELECT * FROM
// moved`, README "Keeping billed history") and an UPDATE that moves a reply
// to another partition (a DELETE and an INSERT to the triggers). Without it
// the inserted reply would be estimated again from the messages there, and
// an earlier message edited since the reply was stored would change a
// figure billing promised to freeze.
//
// SQL: billing._hand_over_estimate(message, conversation, prompt_tokens)
// (the full body's DELETE) and billing._take_handed_estimate(message,
// conversation) (the full body's INSERT); the C trigger calls
// take_handed_estimate directly.
#pragma once

#include "postgres_headers.h"

namespace billing::pg {

// Keeps `tokens` for the reply whose message key is `message` (billing._key
// of its id) in conversation `conversation` (billing._key of it; nullptr
// for none), until the transaction ends or an insert takes it. Past
// kMaxHandedEstimates kept at once, nothing more is kept: those replies
// are estimated again where they arrive.
void hand_over_estimate(const text* message, const text* conversation, int64 tokens);

// The estimate kept for that reply, removed as it is taken; false when
// none is (the usual case, answered without a hash lookup).
bool take_handed_estimate(const text* message, const text* conversation, int64* tokens);

inline constexpr long kMaxHandedEstimates = 100000;

}  // namespace billing::pg
