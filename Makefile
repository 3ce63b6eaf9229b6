# cdp: PGXS build of the extension, plus the unit tests of src/core and the
# demo data generator.  `make && make install` builds and installs; the
# README's two commands (contrib/demo/demo.sh, test/run.sh) do everything else.

EXTENSION = cdp
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" cdp.control)

MODULE_big = cdp
CORE_SRCS = $(sort $(wildcard src/core/*.c))
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c))) $(CORE_SRCS:.c=.o)

# The install script is built from one SQL file per area: the foundation and
# identity in this order, then the other areas (which build on them) by name,
# then the roles and their grants, when every object exists.
SQL_FIRST = src/sql/header.sql src/sql/events.sql src/sql/partitions.sql src/sql/identity.sql
SQL_LAST = src/sql/roles.sql
SQL_PARTS = $(SQL_FIRST) $(filter-out $(SQL_FIRST) $(SQL_LAST) src/sql/cdp--%,$(sort $(wildcard src/sql/*.sql))) $(SQL_LAST)
DATA_built = cdp--$(EXTVERSION).sql
# Released versions: the frozen install script of each earlier release
# (src/sql/cdp--X.sql, so that CREATE EXTENSION cdp VERSION 'X' works) and
# the upgrade scripts (src/sql/cdp--OLD--NEW.sql), installed as they are.
DATA = $(sort $(wildcard src/sql/cdp--*.sql))

# pg_regress: one test per area, the foundation and identity first.
REGRESS_FIRST = events validation quarantine partitions identity identity_overrides
REGRESS = $(REGRESS_FIRST) $(filter-out $(REGRESS_FIRST),$(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=cdp

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -Isrc -Isrc/core
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
ifdef DEBUG
PG_CFLAGS += -DUSE_ASSERT_CHECKING -O0 -g
endif
# SANITIZE=1: cdp.so under AddressSanitizer and UBSan (it then needs their
# runtimes: see test/run.sh); test/lib.sh cleans when the flavour changes.
ifdef SANITIZE
PG_CFLAGS += -fsanitize=address,undefined --param=asan-stack=0 -fno-omit-frame-pointer -fno-sanitize-recover=all -g
SHLIB_LINK += -fsanitize=address,undefined
endif

EXTRA_CLEAN = test/unit/build contrib/demo/cdp-demo-gen contrib/outbox/cdp-sender .build-flavour

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: every object is rebuilt when one changes.
$(OBJS): $(wildcard src/*.h src/core/*.h)

cdp--$(EXTVERSION).sql: $(SQL_PARTS) cdp.control
	cat $(SQL_PARTS) > $@

# C unit tests of the pure core, under AddressSanitizer and UBSan.
UNIT_CC ?= gcc
UNIT_CFLAGS = -std=c11 -g -O1 -Wall -Wextra -Werror -Isrc/core \
	-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
UNIT_TESTS = $(patsubst test/unit/%.c,test/unit/build/%,$(filter-out test/unit/unit.c,$(wildcard test/unit/test_*.c)))

test/unit/build/%: test/unit/%.c test/unit/unit.c test/unit/unit.h $(CORE_SRCS) $(wildcard src/core/*.h)
	@mkdir -p test/unit/build
	@echo "compiling $(notdir $@) with the core, under AddressSanitizer and UBSan"
	$(UNIT_CC) $(UNIT_CFLAGS) -o $@ $< test/unit/unit.c $(CORE_SRCS) -lm

unit: $(UNIT_TESTS) symbols
	@echo "running the $(words $(UNIT_TESTS)) unit tests"
	@set -e; for t in $(UNIT_TESTS); do $$t; done

# Every global symbol of cdp.so carries the cdp_ prefix (or is one that
# PostgreSQL looks up), so that it cannot clash with another library's.
symbols: $(shlib)
	@bad=$$(nm -D --defined-only $(shlib) | awk '{print $$3}' | \
		grep -v -E '^(cdp_|pg_finfo_cdp_|Pg_magic_func$$|_PG_init$$)' | tr '\n' ' '); \
	if [ -z "$$bad" ]; then echo "symbols: 1 passed, 0 failed"; \
	else echo "global symbols without the cdp_ prefix: $$bad"; echo "symbols: 0 passed, 1 failed"; exit 1; fi

# Demo data generator (plain C, no PostgreSQL).
contrib/demo/cdp-demo-gen: contrib/demo/cdp_demo_gen.c
	$(UNIT_CC) -O2 -Wall -Wextra -Werror -o $@ $< -lm

demo-gen: contrib/demo/cdp-demo-gen

# Example sender of the outbox (libpq).
contrib/outbox/cdp-sender: contrib/outbox/cdp_sender.c
	$(UNIT_CC) -O2 -Wall -Wextra -Werror -I$(shell $(PG_CONFIG) --includedir) -o $@ $< \
		-L$(shell $(PG_CONFIG) --libdir) -lpq

sender: contrib/outbox/cdp-sender

.PHONY: unit symbols demo-gen sender
