# PGXS build of the billing extension. The C++ unit tests, fuzzers and
# sanitizer builds of the PostgreSQL-free core live in CMakeLists.txt.
EXTENSION = billing
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = billing
OBJS = $(patsubst %.cpp,%.o,$(sort $(wildcard src/core/*.cpp src/pg/*.cpp)))

# Install scripts: the first version's full script and every upgrade script.
DATA = $(sort $(wildcard $(EXTENSION)--*.sql))

# Regression tests: sql/NAME.sql against expected/NAME.out, in name order.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --dbname=billing_regression --load-extension=billing

# Concurrency tests: test/isolation/specs/NAME.spec against test/isolation/expected/NAME.out.
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --dbname=billing_isolation --load-extension=billing

PG_CPPFLAGS = -Isrc/core -Isrc/pg
PG_CXXFLAGS = -std=c++17 -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-register $(BILLING_CXXFLAGS)
SHLIB_LINK = -lfmt -lstdc++

# PostgreSQL's JIT bitcode is not built for C++ sources here.
override with_llvm = no

PG_CONFIG ?= $(shell command -v /usr/lib/postgresql/15/bin/pg_config || echo pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: dist
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(EXTENSION)-$(EXTVERSION).zip HEAD

# Rebuild every object when any header changes (PGXS tracks no header deps).
$(OBJS): $(wildcard src/core/*.h src/pg/*.h)
