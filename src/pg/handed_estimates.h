// Frozen prompt estimates handed from a deleted reply to the same reply
// inserted later in the same statement: the archive move (`WITH moved AS
// (DELETE ... RETURNING *) INSERT INTO archive SELECT * FROM moved`, README
// "Keeping billed history") and an UPDATE that moves a reply to another
// partition (a DELETE and an INSERT to the triggers). Without it the
// inserted reply would be estimated again from the messages there, and an
// earlier message edited since the reply was stored would change a figure
// billing promised to freeze.
//
// One statement the client sends (its statement_timestamp()), not the
// transaction: a reply deleted by one statement and an id stored again by a
// later one (an app regenerating a reply under its id) are two replies,
// estimated each from its own conversation. The statements of one query
// string or one function call share that time, and count as one.
//
// SQL: billing._hand_over_estimate(message, conversation, prompt_tokens)
// (the full body's DELETE, for a reply whose estimate is frozen) and
// billing._take_handed_estimate(message, conversation) (the full body's
// INSERT); the C trigger calls take_handed_estimate directly.
#pragma once

#include "postgres_headers.h"

namespace billing::pg {

// Keeps `tokens` for the reply whose message key is `message` (billing._key
// of its id) in conversation `conversation` (billing._key of it; nullptr
// for none), until the statement ends or an insert takes it. Past
// kMaxHandedEstimates kept at once, nothing more is kept: those replies
// are estimated again where they arrive.
void hand_over_estimate(const text* message, const text* conversation, int64 tokens);

// The estimate kept for that reply by this statement, removed as it is
// taken; false when none is (the usual case, answered without a hash
// lookup).
bool take_handed_estimate(const text* message, const text* conversation, int64* tokens);

inline constexpr long kMaxHandedEstimates = 100000;

}  // namespace billing::pg
