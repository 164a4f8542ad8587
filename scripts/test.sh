#!/bin/bash
# test.sh — `make test`: on Debian 12 as root, install what is missing, build
# and install the extension, start a throwaway PostgreSQL cluster (private
# directory under /tmp, free port, own socket directory), run every suite,
# stop the cluster (also on failure or interrupt) and print
# "N passed, N failed".  Exits non-zero when anything failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$COMET_ROOT"

# nginx-light: the scale-out suite puts nginx in front of three bridges
deps_install $COMET_PACKAGES_BUILD $COMET_PACKAGES_BROWSER nginx-light || exit 1
node_install
npm_ci "$COMET_ROOT/tests/browser"
build_install || die "build failed"

# results of an earlier run must not be mistaken for this one's
rm -rf results output_iso regression.diffs regression.out

WORK=$(mktemp -d /tmp/comet-test.XXXXXX)
cleanup() {
	cluster_stop "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_init "$WORK"
# fsync off: a throwaway cluster need not survive a power cut
cluster_start "$WORK" fsync=off max_prepared_transactions=2

PASSED=0
FAILED=0
FAILED_SUITES=()

# count OK FAIL SUITE: add a suite's results to the totals.
count() {
	PASSED=$((PASSED + $1))
	FAILED=$((FAILED + $2))
	[ "$2" -gt 0 ] && FAILED_SUITES+=("$3")
	return 0
}

# pg_regress and pg_isolation_regress print one "... ok" / "... FAILED" line per test.
count_regress_output() {
	local out=$1 suite=$2 ok bad
	ok=$(grep -cE '^(test| ) +[A-Za-z0-9_]+ +\.\.\. ok' "$out" || true)
	bad=$(grep -cE '^(test| ) +[A-Za-z0-9_]+ +\.\.\. (FAILED|failed)' "$out" || true)
	# a runner that died before its tests counts as a failure
	if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	count "$ok" "$bad" "$suite"
}

log "suite: version"
tests/version.sh && count 1 0 version || count 0 1 version

log "suite: template parser (outside the server, ASan+UBSan)"
make -s unit-test >"$WORK/unit.out" 2>&1
cat "$WORK/unit.out"
count "$(grep -c '^ok ' "$WORK/unit.out" || true)" \
	"$(grep -c '^not ok ' "$WORK/unit.out" || true)" template
grep -q '^# all passed' "$WORK/unit.out" || count 0 1 template-harness

# .../lib/pgxs/src/makefiles/pgxs.mk -> .../lib/pgxs
log "suite: bridge units (ASan+UBSan; pg_test uses the throwaway cluster)"
COMET_TEST_DB="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
	make -s -C bridge unit-test >"$WORK/bridge-unit.out" 2>&1
cat "$WORK/bridge-unit.out"
count "$(grep -c '^ok ' "$WORK/bridge-unit.out" || true)" \
	"$(grep -c '^not ok ' "$WORK/bridge-unit.out" || true)" bridge-units
# every program must have finished with its summary (a crash prints none)
[ "$(grep -c '^# all passed' "$WORK/bridge-unit.out" || true)" -eq "$(make -s -C bridge print-TESTS | wc -w)" ] \
	|| count 0 1 bridge-unit-harness

log "suite: bridge black-box (real HTTP, real PostgreSQL, bridge built with ASan+UBSan)"
make -s -C bridge asan/comet-bridge >"$WORK/bridge-build.out" 2>&1 || cat "$WORK/bridge-build.out"
mkdir -p "$WORK/sanitizer"
COMET_BRIDGE="$COMET_ROOT/bridge/asan/comet-bridge" \
	COMET_TEST_DB="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
	COMET_TEST_RESTART="$COMET_ROOT/scripts/cluster-restart.sh $WORK" \
	ASAN_OPTIONS="log_path=$WORK/sanitizer/asan:detect_leaks=1" \
	UBSAN_OPTIONS="log_path=$WORK/sanitizer/ubsan:print_stacktrace=1" \
	bridge/t/run.sh >"$WORK/blackbox.out" 2>&1
grep -aE '^(not )?ok |^Result|^Files=|^bridge/t/' "$WORK/blackbox.out"
count "$(grep -ac '^ok ' "$WORK/blackbox.out" || true)" \
	"$(grep -ac '^not ok ' "$WORK/blackbox.out" || true)" bridge-blackbox
grep -aq '^Result: PASS' "$WORK/blackbox.out" || { count 0 1 bridge-blackbox-run; tail -n 80 "$WORK/blackbox.out"; }

# node --test with the TAP reporter ends with "# pass N", "# fail N", ...;
# a skipped or cancelled test is not a pass.
count_node_output() {
	local out=$1 suite=$2 pass fail
	pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n 1)
	fail=$(awk '/^# (fail|cancelled|skipped|todo) [0-9]+$/ { n += $3 } END { print n + 0 }' "$out")
	if [ -z "$pass" ]; then
		log "$suite: the runner printed no summary"
		count 0 1 "$suite"
		return
	fi
	count "$pass" "${fail:-0}" "$suite"
}

# the client and the browser suites run the sanitizer build of the bridge too
export COMET_BRIDGE="$COMET_ROOT/bridge/asan/comet-bridge"
export COMET_TEST_DB="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
export ASAN_OPTIONS="log_path=$WORK/sanitizer/asan:detect_leaks=1"
export UBSAN_OPTIONS="log_path=$WORK/sanitizer/ubsan:print_stacktrace=1"

log "suite: client (comet.js under Node against a real bridge)"
node --test --test-reporter=tap client/test/*.test.mjs >"$WORK/client.out" 2>&1
grep -aE '^ *(not )?ok |^# (tests|pass|fail|cancelled|skipped|todo) ' "$WORK/client.out"
count_node_output "$WORK/client.out" client
grep -aq '^# fail 0$' "$WORK/client.out" || tail -n 120 "$WORK/client.out"

log "suite: browser (Grid-o-Matic in headless chromium)"
export COMET_ARTIFACTS="$COMET_ROOT/tests/browser/artifacts"
node --test --test-reporter=tap tests/browser/*.test.mjs >"$WORK/browser.out" 2>&1
grep -aE '^ *(not )?ok |^# (tests|pass|fail|cancelled|skipped|todo) ' "$WORK/browser.out"
count_node_output "$WORK/browser.out" browser
grep -aq '^# fail 0$' "$WORK/browser.out" || tail -n 120 "$WORK/browser.out"
log "browser screenshots: tests/browser/artifacts/"

# the fault suite restarts the cluster: it runs alone, one case after another
log "suite: fault (5,000 packets under each fault; PostgreSQL restarted, backends killed, ...)"
COMET_TEST_RESTART="$COMET_ROOT/scripts/cluster-restart.sh $WORK" COMET_ARTIFACTS_FAULT="$WORK/fault" \
	node --test --test-reporter=tap tests/fault/*.test.mjs >"$WORK/fault.out" 2>&1
grep -aE '^ *(not )?ok |^# fault |^# (tests|pass|fail|cancelled|skipped|todo) ' "$WORK/fault.out"
count_node_output "$WORK/fault.out" fault
grep -aq '^# fail 0$' "$WORK/fault.out" || tail -n 120 "$WORK/fault.out"

log "suite: scale-out (three bridges behind nginx, one killed and restarted)"
node --test --test-reporter=tap tests/cluster/*.test.mjs >"$WORK/cluster.out" 2>&1
grep -aE '^ *(not )?ok |^# (tests|pass|fail|cancelled|skipped|todo) |^# [a-z0-9]' "$WORK/cluster.out"
count_node_output "$WORK/cluster.out" cluster
grep -aq '^# fail 0$' "$WORK/cluster.out" || tail -n 120 "$WORK/cluster.out"
unset ASAN_OPTIONS UBSAN_OPTIONS

# any sanitizer report from the bridge is a failure
if ls "$WORK/sanitizer"/* >/dev/null 2>&1; then
	log "sanitizer reports:"
	head -n 60 "$WORK/sanitizer"/*
	count 0 1 bridge-sanitizers
else
	count 1 0 bridge-sanitizers
fi

PGXS_DIR=$(dirname "$(dirname "$(dirname "$(make -s print-PGXS)")")")
log "suite: pg_regress"
"$PGXS_DIR/src/test/regress/pg_regress" --inputdir=. --bindir="$PG_BIN" \
	--dbname=comet_regression $(make -s print-REGRESS) 2>&1 | tee "$WORK/regress.out"
count_regress_output "$WORK/regress.out" regress

log "suite: isolation"
"$PGXS_DIR/src/test/isolation/pg_isolation_regress" --inputdir=. --outputdir=output_iso \
	--bindir="$PG_BIN" --dbname=comet_isolation $(make -s print-ISOLATION) 2>&1 \
	| tee "$WORK/isolation.out"
count_regress_output "$WORK/isolation.out" isolation

for diffs in regression.diffs output_iso/regression.diffs; do
	if [ -s "$diffs" ]; then
		log "differences in $diffs:"
		head -n 200 "$diffs"
	fi
done

# fuzz/run.sh prints "fuzz: NAME ok (N runs)" or "fuzz: NAME FAILED ..." per harness
log "suite: fuzz (short)"
fuzz/run.sh 20 >"$WORK/fuzz.out" 2>&1
fuzz_status=$?
cat "$WORK/fuzz.out"
count "$(grep -ac '^fuzz: [a-z_]* ok (' "$WORK/fuzz.out" || true)" \
	"$(grep -ac '^fuzz: [a-z_]* FAILED' "$WORK/fuzz.out" || true)" fuzz
# a run that failed before any harness said so (installing clang, say)
[ "$fuzz_status" -eq 0 ] || grep -aq '^fuzz: [a-z_]* FAILED' "$WORK/fuzz.out" \
	|| count 0 1 fuzz-run

# scripts/analyze.sh prints "analyze: NAME ok" or "analyze: NAME FAILED" per part
log "suite: static analysis (cppcheck, clang --analyze)"
scripts/analyze.sh >"$WORK/analyze.out" 2>&1
analyze_status=$?
cat "$WORK/analyze.out"
count "$(grep -ac '^analyze: .* ok$' "$WORK/analyze.out" || true)" \
	"$(grep -ac '^analyze: .* FAILED$' "$WORK/analyze.out" || true)" analyze
[ "$analyze_status" -eq 0 ] || grep -aq '^analyze: .* FAILED$' "$WORK/analyze.out" \
	|| count 0 1 analyze-run

echo
[ ${#FAILED_SUITES[@]} -gt 0 ] && echo "failed suites: ${FAILED_SUITES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
