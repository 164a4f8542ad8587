#!/bin/bash
# fuzz/run.sh [SECONDS] — `make fuzz`: build the libFuzzer harnesses with
# clang (ASan, UBSan, LeakSanitizer) into fuzz/build/ and run each for
# SECONDS (default 60), one after the other, on a working copy of its seed
# corpus.  Prints "fuzz: NAME ok (N runs)" per clean harness, or what broke
# and where the input was saved (fuzz/crashes/); exits non-zero if anything
# crashed, leaked, timed out or failed to build.
#
# The committed corpus (fuzz/corpus/NAME/) is only read: the inputs a run
# finds go to fuzz/build/corpus/NAME/, which later runs start from (delete
# fuzz/build/ to start over).  See fuzz/README.md.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$COMET_ROOT" || exit 1

# What building the harnesses needs from Debian.  Debian 12's clang leaves
# the libFuzzer and sanitizer runtimes to libclang-rt-14-dev, which it only
# recommends, and deps_install installs no recommends.
FUZZ_PACKAGES="clang libclang-rt-14-dev libjson-c-dev pkg-config"

# The harnesses: fuzz/NAME_fuzzer.c, seeds in fuzz/corpus/NAME/.
FUZZ_HARNESSES="request template"

# harness_sources NAME: the include flag and the product sources NAME links.
harness_sources() {
	case $1 in
		request) echo "-Ibridge bridge/protocol.c bridge/buf.c" ;;
		template) echo "-Ipl pl/template.c" ;;
	esac
}

SECONDS_EACH=${1:-60}
case $SECONDS_EACH in
	'' | *[!0-9]*) die "usage: fuzz/run.sh [SECONDS]  (a whole number, not '$SECONDS_EACH')" ;;
esac
[ "$SECONDS_EACH" -ge 1 ] || die "SECONDS must be at least 1"

# shellcheck disable=SC2086  # one word per package
deps_install $FUZZ_PACKAGES || exit 1

BUILD=$COMET_ROOT/fuzz/build
CRASHES=$COMET_ROOT/fuzz/crashes
mkdir -p "$BUILD" "$CRASHES"

CFLAGS="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
	-fno-omit-frame-pointer -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow
	-Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla"
JSONC_CFLAGS=$(pkg-config --cflags json-c)
JSONC_LIBS=$(pkg-config --libs json-c)

# build NAME: fuzz/build/NAME_fuzzer from the harness, the oracle and the
# product sources; the compiler's output goes to fuzz/build/NAME.build.log.
build() {
	local name=$1
	# shellcheck disable=SC2086,SC2046  # word splitting wanted
	clang $CFLAGS -Ifuzz $JSONC_CFLAGS -o "$BUILD/${name}_fuzzer" \
		"fuzz/${name}_fuzzer.c" fuzz/oracle.c $(harness_sources "$name") $JSONC_LIBS \
		>"$BUILD/$name.build.log" 2>&1
}

# run NAME: fuzz for SECONDS_EACH; prints the result line; fails on a finding.
run() {
	local name=$1
	local log=$BUILD/$name.log corpus=$BUILD/corpus/$name
	local dict=() status runs stats saved
	mkdir -p "$corpus"
	# the seeds join the working corpus; what earlier runs found stays
	cp -n fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
	[ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
	# reports on stderr, with stacks, whatever the caller's environment says
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$BUILD/${name}_fuzzer" "${dict[@]}" -max_total_time="$SECONDS_EACH" -timeout=5 \
		-rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$CRASHES/$name-" \
		"$corpus" >"$log" 2>&1
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	stats=$(grep -aE '^#[0-9]+[[:space:]]+DONE ' "$log" | tail -n 1 | sed 's/.*DONE *//')
	if [ "$status" -eq 0 ] && [ -n "$runs" ]; then
		log "$name: $stats"
		echo "fuzz: $name ok ($runs runs)"
		return 0
	fi
	echo "fuzz: $name FAILED (exit $status) after ${runs:-?} runs"
	# the sanitizer's or the invariant's report, with its stack
	grep -aE -A 40 '^(==[0-9]+== ?ERROR|fuzz invariant broken|.*runtime error:|ALARM: working on the last Unit)' \
		"$log" | head -n 60 | cut -c 1-240
	# libFuzzer says "Test unit written to PATH" when it saves the input
	saved=$(sed -n 's/^.*Test unit written to //p' "$log" | tail -n 1)
	if [ -n "$saved" ]; then
		echo "saved input: ${saved#"$COMET_ROOT"/}"
		echo "reproduce:   fuzz/build/${name}_fuzzer ${saved#"$COMET_ROOT"/}"
		echo "minimise:    fuzz/build/${name}_fuzzer -minimize_crash=1 -runs=100000 ${saved#"$COMET_ROOT"/}"
	fi
	echo "full log:    ${log#"$COMET_ROOT"/}"
	return 1
}

FAILED=0
for name in $FUZZ_HARNESSES; do
	log "building ${name}_fuzzer"
	if ! build "$name"; then
		cat "$BUILD/$name.build.log"
		echo "fuzz: $name FAILED (does not build)"
		FAILED=1
		continue
	fi
	log "fuzzing $name for $SECONDS_EACH s"
	run "$name" || FAILED=1
done
exit "$FAILED"
