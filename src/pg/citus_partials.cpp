// When Citus splits a cost aggregate, each worker runs, for its shard,
//   worker_partial_agg('billing.openai_cost(jsonb,timestamptz)'::regprocedure, ROW(data, created_at))
// which Citus defines as to_cstring(<the aggregate without its final
// function>(data, created_at)). Its generic transition function builds and
// takes apart a ROW, and looks the aggregate and billing's transition
// function up again, for every row: about twice the native aggregate's
// cost per row (bench/citus_row_cost.sh). This planner hook, on the
// worker, replaces such a call by billing's own aggregate that is exactly
// that: billing._citus_partial_openai_cost(data, created_at), the same
// transition function, state and initial value, and a final function that
// writes the state's text (src/sql/citus.sql), stamped with the version of
// the cluster's shared catalog that priced it (cost_state_stamped_out,
// src/pg/cost_state_type.cpp). The coordinator's coord_combine_agg reads
// that text as it reads Citus's, and checks the stamp.
//
// Only a call it can map exactly is replaced: a billing cost aggregate
// whose partial twin takes exactly the argument types given, without
// ORDER BY or DISTINCT; anything else is left to Citus.
// billing.citus_partial_aggregates = off leaves every call to Citus.
//
// Nothing here throws or holds an object with a destructor.
#include "citus_partials.h"

#include "postgres_headers.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
}

#include <cstring>

namespace billing::pg {

bool citus_partial_aggregates = true;

namespace {

planner_hook_type previous_planner = nullptr;

constexpr int kMaxArgs = 4;  // openai_cost(text, bigint, bigint, timestamptz)

// Whether function `fn` is pg_catalog.worker_partial_agg.
bool is_worker_partial_agg(Oid fn) {
  if (get_func_namespace(fn) != PG_CATALOG_NAMESPACE) return false;
  char* name = get_func_name(fn);
  const bool match = name != nullptr && std::strcmp(name, "worker_partial_agg") == 0;
  if (name != nullptr) pfree(name);
  return match;
}

// The aggregate a worker_partial_agg call names (its first argument, a
// constant), or InvalidOid.
Oid named_aggregate(const Aggref* call) {
  auto* first = static_cast<TargetEntry*>(linitial(call->args));
  Node* e = reinterpret_cast<Node*>(first->expr);
  while (e != nullptr && IsA(e, RelabelType)) e = reinterpret_cast<Node*>(reinterpret_cast<RelabelType*>(e)->arg);
  if (e == nullptr || !IsA(e, Const)) return InvalidOid;
  const Const* c = reinterpret_cast<const Const*>(e);
  if (c->constisnull || (c->consttype != OIDOID && c->consttype != REGPROCEDUREOID && c->consttype != REGPROCOID))
    return InvalidOid;
  return DatumGetObjectId(c->constvalue);
}

// billing's partial twin of cost aggregate `aggregate` for arguments of
// `types`, or InvalidOid when there is none: `aggregate` must be
// billing.openai_cost or billing.aws_cost taking exactly these types.
Oid partial_twin(Oid aggregate, const Oid* types, int nargs) {
  const Oid billing = get_namespace_oid("billing", true);
  if (!OidIsValid(billing) || get_func_namespace(aggregate) != billing) return InvalidOid;
  HeapTuple tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(aggregate));
  if (!HeapTupleIsValid(tuple)) return InvalidOid;
  const Form_pg_proc proc = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tuple));
  bool same = proc->prokind == PROKIND_AGGREGATE && proc->pronargs == nargs &&
              (std::strcmp(NameStr(proc->proname), "openai_cost") == 0 ||
               std::strcmp(NameStr(proc->proname), "aws_cost") == 0);
  for (int i = 0; same && i < nargs; ++i) same = proc->proargtypes.values[i] == types[i];
  char twin_name[NAMEDATALEN];
  if (same) snprintf(twin_name, sizeof twin_name, "_citus_partial_%s", NameStr(proc->proname));
  ReleaseSysCache(tuple);
  if (!same) return InvalidOid;
  List* name = list_make2(makeString(pstrdup("billing")), makeString(pstrdup(twin_name)));
  const Oid twin = LookupFuncName(name, nargs, types, true);
  if (!OidIsValid(twin) || get_func_prokind(twin) != PROKIND_AGGREGATE || get_func_rettype(twin) != CSTRINGOID)
    return InvalidOid;
  return twin;
}

// What a worker_partial_agg call maps to: billing's partial twin, and the
// aggregate's own arguments (taken out of Citus's ROW()) with their types.
struct PartialMapping {
  Oid twin = InvalidOid;
  List* args = NIL;
  Oid types[kMaxArgs];
  int nargs = 0;
};

// The mapping of `call`, or one whose twin is InvalidOid when `call` is not
// a worker_partial_agg of a billing cost aggregate that can be mapped
// exactly.
PartialMapping find_partial(const Aggref* call) {
  PartialMapping m;
  if (call->aggkind != AGGKIND_NORMAL || call->aggstar || call->aggorder != NIL || call->aggdistinct != NIL ||
      list_length(call->args) != 2 || !is_worker_partial_agg(call->aggfnoid))
    return m;
  const Oid aggregate = named_aggregate(call);
  if (!OidIsValid(aggregate)) return m;
  // The arguments: ROW(...) for several, the one expression for one.
  Expr* packed = static_cast<TargetEntry*>(lsecond(call->args))->expr;
  List* args = IsA(packed, RowExpr) ? reinterpret_cast<RowExpr*>(packed)->args : list_make1(packed);
  const int nargs = list_length(args);
  if (nargs < 1 || nargs > kMaxArgs) return m;
  for (int i = 0; i < nargs; ++i) m.types[i] = exprType(static_cast<Node*>(list_nth(args, i)));
  m.twin = partial_twin(aggregate, m.types, nargs);
  m.args = args;
  m.nargs = nargs;
  return m;
}

// The call of the twin that computes what `call` does.
Aggref* partial_call(const Aggref* call, const PartialMapping& m) {
  Aggref* partial = makeNode(Aggref);
  partial->aggfnoid = m.twin;
  partial->aggtype = CSTRINGOID;
  partial->aggcollid = InvalidOid;
  partial->inputcollid = call->inputcollid;
  partial->aggtranstype = InvalidOid;  // (the planner's)
  partial->aggargtypes = NIL;
  partial->args = NIL;
  for (int i = 0; i < m.nargs; ++i) {
    partial->aggargtypes = lappend_oid(partial->aggargtypes, m.types[i]);
    partial->args = lappend(partial->args, makeTargetEntry(static_cast<Expr*>(copyObjectImpl(list_nth(m.args, i))),
                                                           static_cast<AttrNumber>(i + 1), nullptr, false));
  }
  partial->aggfilter = static_cast<Expr*>(copyObjectImpl(call->aggfilter));
  partial->aggkind = AGGKIND_NORMAL;
  partial->agglevelsup = call->agglevelsup;
  partial->aggsplit = AGGSPLIT_SIMPLE;
  partial->aggno = -1;
  partial->aggtransno = -1;
  partial->location = call->location;
  return partial;
}

// (PostgreSQL 15 declares the walkers' and mutators' callbacks without
// their arguments)
using Walker = bool (*)();
using Mutator = Node* (*)();
template <typename To, typename From>
To callback(From f) {
  return reinterpret_cast<To>(reinterpret_cast<void (*)()>(f));  // (via void (*)(): no -Wcast-function-type)
}

bool has_partial_call(Node* node, void* context) {
  if (node == nullptr) return false;
  if (IsA(node, Aggref) && OidIsValid(find_partial(reinterpret_cast<Aggref*>(node)).twin)) return true;
  if (IsA(node, Query)) return query_tree_walker(reinterpret_cast<Query*>(node), callback<Walker>(has_partial_call), context, 0);
  return expression_tree_walker(node, callback<Walker>(has_partial_call), context);
}

Node* replace_partial_calls(Node* node, void* context) {
  if (node == nullptr) return nullptr;
  if (IsA(node, Aggref)) {
    const auto* call = reinterpret_cast<Aggref*>(node);
    const PartialMapping m = find_partial(call);
    if (OidIsValid(m.twin)) return reinterpret_cast<Node*>(partial_call(call, m));
  }
  if (IsA(node, Query))
    return reinterpret_cast<Node*>(
        query_tree_mutator(reinterpret_cast<Query*>(node), callback<Mutator>(replace_partial_calls), context, 0));
  return expression_tree_mutator(node, callback<Mutator>(replace_partial_calls), context);
}

PlannedStmt* billing_planner(Query* parse, const char* query_string, int cursor_options, ParamListInfo params) {
  // (a worker's shard query is a SELECT; its worker_partial_agg calls may
  // be in a subquery)
  if (citus_partial_aggregates && parse->commandType == CMD_SELECT &&
      has_partial_call(reinterpret_cast<Node*>(parse), nullptr))
    parse = reinterpret_cast<Query*>(replace_partial_calls(reinterpret_cast<Node*>(parse), nullptr));
  return previous_planner != nullptr ? previous_planner(parse, query_string, cursor_options, params)
                                     : standard_planner(parse, query_string, cursor_options, params);
}

}  // namespace

void citus_partials_init() {
  previous_planner = planner_hook;
  planner_hook = billing_planner;
}

}  // namespace billing::pg
