// See billing_function.h. Nothing here throws or holds an object with a
// destructor.
#include "billing_function.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "utils/syscache.h"
}

namespace billing::pg {

Oid billing_function(const char* name, int nargs, const Oid* argtypes) {
  const Oid schema = get_namespace_oid("billing", true);
  if (!OidIsValid(schema)) return InvalidOid;
  oidvector* args = buildoidvector(argtypes, nargs);
  const Oid found = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(name),
                                    PointerGetDatum(args), ObjectIdGetDatum(schema));
  pfree(args);
  return found;
}

}  // namespace billing::pg
