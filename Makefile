# Makefile — comet's build (PGXS) and the project's commands.
#
#   make, make install, make installcheck   as for any PGXS extension
#   make test    on Debian 12 as root: install what is missing, build,
#                start a throwaway cluster, run every suite, stop it
#   make run     the same set-up, with a persistent cluster under .run/
#   make stop    stop what make run started
#   make run-cluster   three bridges behind nginx (examples/nginx) serving
#                the demo on 127.0.0.1:8080; make stop-cluster stops it
#   make bench   the benchmarks (never part of make test)
#   make fuzz    the libFuzzer harnesses, FUZZ_SECONDS each
#   make analyze static analysis of the C code (also part of make test)
#
# The version below is the one version of the extension; comet.control and
# META.json must say the same (the test suite checks).

EXTENSION   = comet
EXTVERSION  = 0.1.0

MODULE_big  = comet
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard pl/*.c)))
DATA        = sql/comet--$(EXTVERSION).sql
# PostgreSQL's headers are included as system headers: -Wextra is for our code
PG_CPPFLAGS = -Ipl -isystem $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)
PG_CFLAGS   = -Wall -Wextra -Werror

# pg_regress: one file per feature, sql/NAME.sql against expected/NAME.out
REGRESS     = extension send channel_names replay_prune access tokens \
              plcomet_validator plcomet_call plcomet_trigger plcomet_do \
              plcomet_privileges
# pg_isolation_regress: specs/NAME.spec against expected/NAME.out
ISOLATION   = commit_order rollback concurrent_senders no_deadlock \
              notify_wakeup cache_invalidation repeatable_read

EXTRA_CLEAN = results/ output_iso/ regression.diffs regression.out \
              log/ tmp_check/ tmp_check_iso/ pl/test/template_test bridge/asan

# Debian keeps PostgreSQL 15's pg_config here; override with PG_CONFIG=...
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

all: bridge/comet-bridge

.PHONY: test run stop run-cluster stop-cluster bench fuzz analyze unit-test install-bridge \
        bridge/comet-bridge

# comet-bridge: built by its own Makefile, installed next to the extension
PREFIX ?= /usr/local
bridge/comet-bridge:
	$(MAKE) -C bridge comet-bridge

install: install-bridge
install-bridge: bridge/comet-bridge
	install -D -m 755 bridge/comet-bridge $(DESTDIR)$(PREFIX)/bin/comet-bridge

test:
	scripts/test.sh

run:
	scripts/run.sh

stop:
	scripts/run.sh stop

run-cluster:
	scripts/run-cluster.sh

stop-cluster:
	scripts/run-cluster.sh stop

bench:
	bench/send/run.sh
	bench/bridge/run.sh

FUZZ_SECONDS ?= 60
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# cppcheck and the Clang Static Analyzer over pl/ and bridge/: no finding
analyze:
	scripts/analyze.sh

# The template parser, built and tested outside the server.
pl/test/template_test: pl/test/template_test.c pl/template.c pl/template.h
	$(CC) -std=c99 -g -O1 -Wall -Wextra -Werror -Ipl -fsanitize=address,undefined \
		-fno-omit-frame-pointer -o $@ pl/test/template_test.c pl/template.c

unit-test: pl/test/template_test
	pl/test/template_test

# PGXS does not track headers: every object depends on the shared ones
$(OBJS): pl/comet.h pl/template.h

ifneq ($(PGXS),)
include $(PGXS)
else
all install installcheck:
	@echo "PostgreSQL 15 development files are missing." >&2
	@echo "Run 'make test' or 'make run' as root (they install them)," >&2
	@echo "or: apt-get install postgresql-15 postgresql-server-dev-15" >&2
	@exit 1
endif

# print-VAR: the value of a make variable, for the scripts
print-%:
	@echo $($*)
