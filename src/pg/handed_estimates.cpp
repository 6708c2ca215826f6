#include "handed_estimates.h"

extern "C" {
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

// A reply's key: its message key, a 0 byte, then its conversation's key,
// or 1 byte 0x01 alone for none (a key is text, which holds no 0 byte).
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

// The transaction's hand-overs, in TopTransactionContext (gone with it);
// `owner` is the transaction they belong to, so a later one starts empty.
HTAB* handed = nullptr;
LocalTransactionId owner = InvalidLocalTransactionId;

HTAB* current(bool create) {
  if (handed != nullptr && owner == MyProc->lxid) return handed;
  handed = nullptr;
  if (!create) return nullptr;
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = sizeof(Key);
  ctl.entrysize = sizeof(Entry);
  ctl.hash = key_hash;
  ctl.match = key_match;
  ctl.hcxt = TopTransactionContext;
  handed = hash_create("billing handed estimates", 64, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
  owner = MyProc->lxid;
  return handed;
}

// The reply's key, its bytes palloc'd in the current memory context.
Key make_key(const text* message, const text* conversation) {
  const Size m = VARSIZE_ANY_EXHDR(message);
  const Size c = conversation == nullptr ? 1 : VARSIZE_ANY_EXHDR(conversation);
  char* bytes = static_cast<char*>(palloc(m + 1 + c));
  memcpy(bytes, VARDATA_ANY(message), m);
  bytes[m] = '\0';
  if (conversation == nullptr) {
    bytes[m + 1] = '\x01';
  } else {
    memcpy(bytes + m + 1, VARDATA_ANY(conversation), c);
  }
  return Key{bytes, m + 1 + c};
}

}  // namespace

void hand_over_estimate(const text* message, const text* conversation, int64 tokens) {
  HTAB* h = current(true);
  if (hash_get_num_entries(h) >= kMaxHandedEstimates) return;
  const MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
  const Key key = make_key(message, conversation);
  MemoryContextSwitchTo(old);
  bool found = false;
  auto* e = static_cast<Entry*>(hash_search(h, &key, HASH_ENTER, &found));
  e->tokens = tokens;  // (a second DELETE of one key in a transaction: the last one's)
}

bool take_handed_estimate(const text* message, const text* conversation, int64* tokens) {
  HTAB* h = current(false);
  if (h == nullptr || hash_get_num_entries(h) == 0) return false;
  const Key key = make_key(message, conversation);
  auto* e = static_cast<Entry*>(hash_search(h, &key, HASH_FIND, nullptr));
  if (e != nullptr) {
    *tokens = e->tokens;
    hash_search(h, &key, HASH_REMOVE, nullptr);
  }
  pfree(const_cast<char*>(key.bytes));
  return e != nullptr;
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
