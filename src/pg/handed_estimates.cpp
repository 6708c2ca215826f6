#include "handed_estimates.h"

extern "C" {
#include "access/xact.h"
#include "common/hashfn.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(hand_over_estimate);
PG_FUNCTION_INFO_V1(take_handed_estimate);
}

namespace billing::pg {
namespace {

// A reply's key: its message key, a 0 byte, then 'N' for no conversation
// or 'C' and its conversation's key (a key is text, which holds no 0 byte).
struct Key {
  const char* bytes;
  Size length;
};
struct Entry {
  Key key;
  int64 tokens;
};

uint32 key_hash(const void* key, Size) {
  const Key* k = static_cast<const Key*>(key);
  return hash_bytes(reinterpret_cast<const unsigned char*>(k->bytes), static_cast<int>(k->length));
}
int key_match(const void* a, const void* b, Size) {
  const Key* x = static_cast<const Key*>(a);
  const Key* y = static_cast<const Key*>(b);
  return x->length == y->length && memcmp(x->bytes, y->bytes, x->length) == 0 ? 0 : 1;
}

// The statement's hand-overs and their keys' bytes, in `memory`, a child
// of TopTransactionContext (gone with the transaction, deleted sooner when
// the next statement of the transaction hands one over). A statement is
// known by its transaction and its start (statement_timestamp(), set as
// each message of the client arrives).
struct Statement {
  LocalTransactionId transaction = InvalidLocalTransactionId;
  TimestampTz start = 0;
};
HTAB* handed = nullptr;
MemoryContext memory = nullptr;
Statement owner;

bool owned_by_this_statement() {
  return handed != nullptr && owner.transaction == MyProc->lxid && owner.start == GetCurrentStatementStartTimestamp();
}

HTAB* current(bool create) {
  if (owned_by_this_statement()) return handed;
  if (handed != nullptr && owner.transaction == MyProc->lxid) MemoryContextDelete(memory);  // (an earlier statement's)
  handed = nullptr;
  memory = nullptr;
  if (!create) return nullptr;
  memory = AllocSetContextCreate(TopTransactionContext, "billing handed estimates", ALLOCSET_DEFAULT_SIZES);
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = sizeof(Key);
  ctl.entrysize = sizeof(Entry);
  ctl.hash = key_hash;
  ctl.match = key_match;
  ctl.hcxt = memory;
  handed = hash_create("billing handed estimates", 64, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
  owner = Statement{MyProc->lxid, GetCurrentStatementStartTimestamp()};
  return handed;
}

// The reply's key, its bytes palloc'd in memory context `cxt`.
Key make_key(MemoryContext cxt, const text* message, const text* conversation) {
  const Size m = VARSIZE_ANY_EXHDR(message);
  const Size c = conversation == nullptr ? 0 : VARSIZE_ANY_EXHDR(conversation);
  char* bytes = static_cast<char*>(MemoryContextAlloc(cxt, m + 2 + c));
  memcpy(bytes, VARDATA_ANY(message), m);
  bytes[m] = '\0';
  bytes[m + 1] = conversation == nullptr ? 'N' : 'C';
  if (conversation != nullptr) memcpy(bytes + m + 2, VARDATA_ANY(conversation), c);
  return Key{bytes, m + 2 + c};
}

}  // namespace

void hand_over_estimate(const text* message, const text* conversation, int64 tokens) {
  HTAB* h = current(true);
  if (hash_get_num_entries(h) >= kMaxHandedEstimates) return;
  const Key key = make_key(memory, message, conversation);
  bool found = false;
  auto* e = static_cast<Entry*>(hash_search(h, &key, HASH_ENTER, &found));
  if (found) pfree(const_cast<char*>(key.bytes));  // (the reply deleted twice: the last one's figure)
  e->tokens = tokens;
}

bool take_handed_estimate(const text* message, const text* conversation, int64* tokens) {
  HTAB* h = current(false);
  if (h == nullptr || hash_get_num_entries(h) == 0) return false;
  const Key key = make_key(CurrentMemoryContext, message, conversation);
  auto* e = static_cast<Entry*>(hash_search(h, &key, HASH_FIND, nullptr));
  pfree(const_cast<char*>(key.bytes));
  if (e == nullptr) return false;
  *tokens = e->tokens;
  const Key kept = e->key;
  hash_search(h, &kept, HASH_REMOVE, nullptr);
  pfree(const_cast<char*>(kept.bytes));  // (a move of millions of rows keeps only those awaiting their INSERT)
  return true;
}

}  // namespace billing::pg

// _hand_over_estimate(message text, conversation text, prompt_tokens bigint)
extern "C" Datum hand_over_estimate(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0) || PG_ARGISNULL(2)) PG_RETURN_VOID();
  billing::pg::hand_over_estimate(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? nullptr : PG_GETARG_TEXT_PP(1),
                                  PG_GETARG_INT64(2));
  PG_RETURN_VOID();
}

// _take_handed_estimate(message text, conversation text) -> bigint, NULL
// when no reply of that key was deleted earlier in the transaction.
extern "C" Datum take_handed_estimate(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_NULL();
  int64 tokens = 0;
  if (!billing::pg::take_handed_estimate(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? nullptr : PG_GETARG_TEXT_PP(1),
                                         &tokens))
    PG_RETURN_NULL();
  PG_RETURN_INT64(tokens);
}
