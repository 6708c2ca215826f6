// Whether a table of billing's is the plain table its C writers expect: the
// tracking trigger's ledger and ledger shards (src/pg/track_row.cpp) and the
// prompt estimates (src/pg/prompt_estimate.cpp). When it is not (a user
// added a trigger, a default, a column), they leave the write to the
// PL/pgSQL body, whose INSERT does what the table asks.
#include "plain_table.h"

extern "C" {
#include "catalog/pg_class.h"
}

namespace billing::pg {

bool plain_table(Relation rel, const Oid* types, int natts) {
  const TupleDesc desc = RelationGetDescr(rel);
  bool plain = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhasrules && rel->trigdesc == nullptr &&
               desc->natts == natts &&
               (desc->constr == nullptr || (desc->constr->num_check == 0 && desc->constr->num_defval == 0));
  for (int i = 0; plain && i < natts; ++i) {
    const Form_pg_attribute a = TupleDescAttr(desc, i);
    plain = !a->attisdropped && a->atttypid == types[i] && a->attgenerated == '\0';
  }
  return plain;
}

}  // namespace billing::pg
