# PGXS build of the billing extension. The C++ unit tests, fuzzers and
# sanitizer builds of the PostgreSQL-free core live in CMakeLists.txt.
EXTENSION = billing
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = billing
OBJS = $(patsubst %.cpp,%.o,$(sort $(wildcard src/core/*.cpp src/pg/*.cpp)))

# The install script of this version is built from the SQL sources by
# concern (src/sql/*.sql, in the order of src/sql/load_order.txt); a fresh
# install runs it alone. src/sql/updates/ keeps what each released version
# needs to update to the next (and 0.1's full script, to install it for
# upgrade tests).
SQL_SOURCES = $(addprefix src/sql/,$(shell cat src/sql/load_order.txt))
BILLING_INSTALL_SQL = $(EXTENSION)--$(EXTVERSION).sql
DATA_built = $(BILLING_INSTALL_SQL)
DATA = $(sort $(wildcard src/sql/updates/$(EXTENSION)--*.sql))

# (PGXS's "all" stays the default goal: the rule below would otherwise be
# the first, and a plain "make" would build only the SQL script.)
.DEFAULT_GOAL := all
$(BILLING_INSTALL_SQL): src/sql/load_order.txt $(SQL_SOURCES)
	{ echo '-- GENERATED from src/sql/ (make $(BILLING_INSTALL_SQL)): edit the sources, not this file.'; \
	  echo '\\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \\quit'; \
	  for f in $(SQL_SOURCES); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# Regression tests: sql/NAME.sql against expected/NAME.out, in this order
# (the cost engine first, then tracking and reads, then roles and attacks;
# drop_extension last, as it drops and re-creates the extension). Every
# sql/*.sql must be listed: a test left out would silently stop running.
REGRESS_SCHEDULE = cost_engine bad_input bad_input_more invalid_usage catalog_edits parallel month_zone \
                   tracking tracked_ddl app_tables publications trigger_paths table_scan aws_usage aws_patterns user_feedback \
                   budgets savings forecast customers message_customers statements customer_reads customer_dashboard permissions security attacks drop_extension
REGRESS = $(REGRESS_SCHEDULE)
ifneq ($(sort $(REGRESS_SCHEDULE)),$(sort $(patsubst sql/%.sql,%,$(wildcard sql/*.sql))))
$(error REGRESS_SCHEDULE in the Makefile and the tests in sql/ differ: \
        $(filter-out $(REGRESS_SCHEDULE),$(patsubst sql/%.sql,%,$(wildcard sql/*.sql))) \
        $(filter-out $(patsubst sql/%.sql,%,$(wildcard sql/*.sql)),$(REGRESS_SCHEDULE)))
endif
REGRESS_OPTS = --inputdir=. --dbname=billing_regression --load-extension=billing

# Concurrency tests: test/isolation/specs/NAME.spec against test/isolation/expected/NAME.out.
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --dbname=billing_isolation --load-extension=billing

PG_CPPFLAGS = -Isrc/core -Isrc/pg
PG_CXXFLAGS = -std=c++17 -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-register $(BILLING_CXXFLAGS)
SHLIB_LINK = -lfmt -lstdc++

# PostgreSQL's JIT bitcode is not built for C++ sources here.
override with_llvm = no

# The PostgreSQL to build for: pg_config on the PATH, or PG_CONFIG=... (as
# Debian's pg_buildext and users with several versions set it; tools/*.sh
# pass PostgreSQL 15's).
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: dist
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(EXTENSION)-$(EXTVERSION).zip HEAD

# Rebuild every object when any header changes (PGXS tracks no header deps).
$(OBJS): $(wildcard src/core/*.h src/pg/*.h)

# The end-to-end scripts of test/scripts/ (upgrade, dump and restore, crash,
# soak, ...) against the server that PG* environment variables name, as
# tools/test.sh runs them on its throwaway cluster.
.PHONY: test-scripts
test-scripts:
	@status=0; for t in test/scripts/*.sh; do echo "==> $$t"; BILLING_REPO_ROOT=$(CURDIR) $$t || status=1; done; exit $$status
