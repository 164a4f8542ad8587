#!/bin/bash
# analyze.sh — `make analyze`: static analysis of comet's C code, with no
# finding allowed.  Two analysers, each over the extension (pl/) and the
# bridge (bridge/), plus the test and fuzz programs for cppcheck:
#
#   cppcheck   warnings, performance and portability checks; findings in
#              system headers (PostgreSQL's, libpq's) are not ours and are
#              suppressed, nothing else is;
#   clang      --analyze (the Clang Static Analyzer, core and unix checkers)
#              with -analyzer-werror, one translation unit at a time.
#
# Prints "analyze: NAME ok" or "analyze: NAME FAILED" followed by the
# findings, per analyser and part; exits non-zero if anything was found.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$COMET_ROOT" || exit 1

deps_install cppcheck clang libjson-c-dev libpq-dev libmicrohttpd-dev \
	postgresql-server-dev-15 || exit 1

PG_INCLUDE_SERVER=$("$PG_BIN/pg_config" --includedir-server)
PQ_INCLUDE=$(pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
JSONC_INCLUDE=/usr/include/json-c
FAILED=0

# report NAME OUTPUT: an empty output is a pass.
report() {
	if [ -s "$2" ]; then
		echo "analyze: $1 FAILED"
		cat "$2"
		FAILED=1
	else
		echo "analyze: $1 ok"
	fi
}

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

CPPCHECK="cppcheck --enable=warning,performance,portability --inline-suppr --quiet
	--error-exitcode=0 --max-configs=1 --suppress=missingIncludeSystem
	--suppress=toomanyconfigs --suppress=*:/usr/include/*"

# shellcheck disable=SC2086
$CPPCHECK --std=c99 -Ipl -I"$PG_INCLUDE_SERVER" pl/*.c pl/test/*.c >"$OUT" 2>&1
report "cppcheck extension" "$OUT"

# shellcheck disable=SC2086
$CPPCHECK --std=c11 -D_GNU_SOURCE -Ibridge -I"$PQ_INCLUDE" -I"$JSONC_INCLUDE" \
	bridge/*.c bridge/test/*.c fuzz/*.c >"$OUT" 2>&1
report "cppcheck bridge" "$OUT"

# clang_analyze FLAGS -- FILES: every finding is an error
clang_analyze() {
	local flags=() f
	while [ "$1" != -- ]; do flags+=("$1"); shift; done
	shift
	: >"$OUT"
	for f in "$@"; do
		clang --analyze -Xclang -analyzer-werror -Xanalyzer -analyzer-output=text \
			"${flags[@]}" -o /dev/null "$f" >>"$OUT" 2>&1
	done
}

clang_analyze -std=gnu99 -D_GNU_SOURCE -Ipl -isystem "$PG_INCLUDE_SERVER" -- pl/*.c
report "clang-analyzer extension" "$OUT"

clang_analyze -std=c11 -D_GNU_SOURCE -Ibridge -isystem "$PQ_INCLUDE" -isystem "$JSONC_INCLUDE" \
	-- bridge/*.c
report "clang-analyzer bridge" "$OUT"

exit "$FAILED"
