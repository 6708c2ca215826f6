#include "reply_role.h"

#include "usage.h"

extern "C" {
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
}

#include <string_view>

namespace billing::pg {

bool role_says_reply(Oid base_type, Datum value, bool* known) {
  *known = true;
  if (base_type == TEXTOID || base_type == VARCHAROID) {
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(value)));
    return is_assistant_role(std::string_view(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v)));
  }
  if (get_typtype(base_type) == TYPTYPE_ENUM) {
    HeapTuple tup = SearchSysCache1(ENUMOID, value);
    if (!HeapTupleIsValid(tup)) {
      *known = false;
      return false;
    }
    const bool reply = is_assistant_role(NameStr(reinterpret_cast<Form_pg_enum>(GETSTRUCT(tup))->enumlabel));
    ReleaseSysCache(tup);
    return reply;
  }
  *known = false;
  return false;
}

bool ids_in_storage_order(Oid base_type) {
  return base_type == INT2OID || base_type == INT4OID || base_type == INT8OID;
}

}  // namespace billing::pg
