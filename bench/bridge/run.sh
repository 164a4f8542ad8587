#!/bin/bash
# run.sh — `make bench`, part 2: comet-bridge under long-poll load.
#
# Installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL cluster (private directory under /tmp, own port and
# socket directory, default durability) and, for each figure, a fresh
# comet-bridge on a free 127.0.0.1 port, driven by bench/bridge/loadgen.c
# (one process, one epoll loop, one keep-alive connection per session,
# each session always holding one poll).  For N = 1,000 and 10,000
# sessions on one channel:
#
#   (a) idle:    the bridge's RSS (VmRSS) before the sessions and 2 s after
#                all N hold a poll; the growth per session in KiB;
#   (b) fan-out: with the N polls held, one packet committed with
#                comet.send through psql; latency = receive time - the
#                clock_timestamp() the packet carries, across the N
#                sessions; FANOUT_PACKETS times, each sent once every
#                session has the previous one and has polled again;
#
# and (c) one subscriber: SINGLE_PACKETS packets sent one at a time, 20 ms
# apart, from one psql session, with comet.send and with a plain
# pg_notify; commit-to-receipt p50/p99.  Prints a Markdown table with the
# brief's targets and writes it to bench/results/bridge.md.  Takes about
# half a minute after the build.  Only the loopback interface and a unix socket are
# used; the bridge, the load generator and the cluster are stopped and
# removed on exit, also on failure or interrupt.
set -uo pipefail
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$COMET_ROOT" || exit 1

PSQL=$PG_BIN/psql
BENCH_DB=comet_bench
CHANNEL=bench
RESULTS=$COMET_ROOT/bench/results/bridge.md
SIZES="1000 10000"
FANOUT_PACKETS=5
SINGLE_PACKETS=200
SINGLE_PAUSE_S=0.02
# descriptors the bridge needs besides one per session (listen socket,
# epoll sets, database connections, log); the load generator needs fewer
FILES_SPARE=64
# the packet: its send time in µs since the epoch, taken inside the
# sending transaction (so the latency includes the commit)
T_US='(extract(epoch from clock_timestamp()) * 1e6)::bigint'
SEND_SQL="SELECT comet.send('$CHANNEL', jsonb_build_object('t', $T_US));"
NOTIFY_SQL="SELECT pg_notify('$CHANNEL', json_build_object('t', $T_US)::text);"
CORES=$(nproc)

# shellcheck disable=SC2086  # a list of package names
deps_install $COMET_PACKAGES_BUILD || exit 1
build_install || die "build failed"
[ -x bridge/comet-bridge ] || die "bridge/comet-bridge was not built"

# Every session is a socket in the bridge and one in the load generator:
# raise the open-file limit as far as the hard limit allows (both inherit
# it) and shrink the largest run when 10,000 cannot be reached.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FILES=$(ulimit -n)
FILES_NOTE=""
if [ "$FILES" != unlimited ] && [ "$FILES" -lt $((10000 + FILES_SPARE)) ]; then
	largest=$((FILES - FILES_SPARE))
	[ "$largest" -ge 1000 ] || die "the open-file limit ($FILES) does not even allow 1,000 sessions"
	FILES_NOTE="the open-file hard limit is $FILES: 10,000 sessions cannot be reached, the largest run has $largest (raise it with ulimit -Hn or LimitNOFILE)"
	log "warning: $FILES_NOTE"
	SIZES="1000 $largest"
	[ "$largest" -eq 1000 ] && SIZES=1000
fi

WORK=$(mktemp -d /tmp/comet-bench-bridge.XXXXXX)
BRIDGE_PID=
LOADGEN_PID=
cleanup() {
	[ -n "$LOADGEN_PID" ] && kill "$LOADGEN_PID" 2>/dev/null
	bridge_stop >/dev/null 2>&1
	cluster_stop "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the load generator"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$WORK/loadgen" bench/bridge/loadgen.c \
	|| die "bench/bridge/loadgen.c does not build"

cluster_init "$WORK"
cluster_start "$WORK"

# sql: run SQL from stdin in the benchmark database, stopping at an error.
sql() {
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB"
}

# sql_value QUERY: the single value QUERY returns.
sql_value() {
	"$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "$1"
}

log "creating database $BENCH_DB"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $BENCH_DB" \
	|| die "could not create the database"
sql >/dev/null <<SQL || die "could not set up the database"
CREATE EXTENSION comet;
SELECT comet.grant('$CHANNEL', ARRAY['subscribe']);
SQL

# bridge_start TAG: a fresh bridge on a free port (sets BRIDGE_PID, PORT).
# A port free when chosen can be taken before the bridge binds it (the
# load generator's own connections use ephemeral ports): then another.
PROBLEMS=()
bridge_start() {
	local tag=$1 attempt _
	BRIDGE_LOG=$WORK/bridge-$tag.log
	for attempt in 1 2 3 4 5; do
		PORT=$(free_port)
		bridge/comet-bridge --listen "127.0.0.1:$PORT" --db "dbname=$BENCH_DB" \
			--max-sessions 20000 --max-pending 100000 --log-level warn >"$BRIDGE_LOG" 2>&1 &
		BRIDGE_PID=$!
		for _ in $(seq 100); do
			grep -q "listening on" "$BRIDGE_LOG" && return 0
			kill -0 "$BRIDGE_PID" 2>/dev/null || break
			sleep 0.1
		done
		wait "$BRIDGE_PID" 2>/dev/null
		BRIDGE_PID=
		grep -q "Address already in use" "$BRIDGE_LOG" || break
		log "port $PORT was taken (attempt $attempt)"
	done
	cat "$BRIDGE_LOG" >&2
	die "the bridge did not start"
}

# bridge_stop: SIGTERM, as an operator would; remember a bad exit.
bridge_stop() {
	local status _
	[ -n "$BRIDGE_PID" ] || return 0
	kill -TERM "$BRIDGE_PID" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$BRIDGE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$BRIDGE_PID" 2>/dev/null; then
		PROBLEMS+=("the bridge did not stop within 5 s of SIGTERM ($BRIDGE_LOG)")
		kill -KILL "$BRIDGE_PID" 2>/dev/null
	fi
	wait "$BRIDGE_PID" 2>/dev/null
	status=$?
	[ "$status" -eq 0 ] || PROBLEMS+=("the bridge exited with status $status")
	BRIDGE_PID=
}

# bridge_check WHAT: remember when the bridge is no longer running.
bridge_check() {
	if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
		PROBLEMS+=("the bridge died during $1; last log lines: $(tail -n 3 "$BRIDGE_LOG" | tr '\n' ' ')")
		log "error: ${PROBLEMS[-1]}"
		return 1
	fi
}

# rss_kib: the bridge's resident set in KiB.
rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$BRIDGE_PID/status"
}

# metric NAME: a value from the bridge's /metrics (plain HTTP over bash's
# /dev/tcp, so no HTTP client is needed).
metric() {
	local name=$1
	{
		exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
		printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
		timeout 5 cat <&3
		exec 3<&-
	} 2>/dev/null | tr -d '\r' | awk -v m="$name" '$1 == m { print $2; exit }'
}

# loadgen_start TAG SESSIONS EXPECT DURATION: the load generator in the
# background (sets LOADGEN_PID, LOADGEN_OUT).
loadgen_start() {
	LOADGEN_OUT=$WORK/loadgen-$1.out
	"$WORK/loadgen" --url-port "$PORT" --sessions "$2" --channel "$CHANNEL" \
		--expect "$3" --duration "$4" >"$LOADGEN_OUT" 2>"$WORK/loadgen-$1.err" &
	LOADGEN_PID=$!
}

# loadgen_wait: wait for the load generator to end; its stderr to ours.
loadgen_wait() {
	wait "$LOADGEN_PID"
	local status=$?
	LOADGEN_PID=
	sed 's/^/    /' "${LOADGEN_OUT%.out}.err" >&2
	[ "$status" -eq 0 ] || die "the load generator failed (status $status)"
}

# loadgen_fail MESSAGE: die with MESSAGE and what the load generator said.
loadgen_fail() {
	cat "$LOADGEN_OUT" "${LOADGEN_OUT%.out}.err" >&2
	die "$1"
}

# wait_for PATTERN SECONDS: wait until the load generator prints a line
# matching PATTERN; fails when it ends or time runs out first.
wait_for() {
	local pattern=$1 deadline=$((SECONDS + $2))
	while [ $SECONDS -lt "$deadline" ]; do
		grep -q "$pattern" "$LOADGEN_OUT" && return 0
		kill -0 "$LOADGEN_PID" 2>/dev/null || { grep -q "$pattern" "$LOADGEN_OUT"; return; }
		sleep 0.02
	done
	return 1
}

# value KEY: the value of "KEY value" in the load generator's output.
value() {
	awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$LOADGEN_OUT"
}

# ms MICROSECONDS: in milliseconds, two decimals ("-" when empty).
ms() {
	awk -v us="$1" 'BEGIN { if (us == "") print "-"; else printf "%.2f", us / 1000 }'
}

# verdict VALUE LIMIT: "met" when VALUE < LIMIT, else "missed".
verdict() {
	awk -v v="$1" -v l="$2" 'BEGIN { if (v == "" || v == "-") print "-"; else if (v + 0 < l + 0) print "met"; else print "missed" }'
}

# fanout N: (a) and (b) for N sessions; results into R[...,N].
declare -A R
fanout() {
	local n=$1 before after held k problems
	log "$n sessions: setting up"
	bridge_start "fanout-$n"
	before=$(rss_kib)
	loadgen_start "fanout-$n" "$n" "$FANOUT_PACKETS" 150
	wait_for '^ready ' 90 || loadgen_fail "$n sessions were not set up within 90 s"
	R[established,$n]=$(value ready)
	[ "${R[established,$n]}" -gt 0 ] || die "no session could be set up (see $WORK/loadgen-fanout-$n.err)"
	for _ in $(seq 100); do
		[ "$(metric comet_requests_pending)" = "${R[established,$n]}" ] && break
		sleep 0.1
	done
	sleep 2
	held=$(metric comet_requests_pending)
	after=$(rss_kib)
	bridge_check "the idle phase with $n sessions"
	R[held,$n]=${held:--}
	R[rss_before,$n]=$before
	R[rss_after,$n]=$after
	R[idle,$n]=$(awk -v a="$after" -v b="$before" -v n="${R[established,$n]}" \
		'BEGIN { printf "%.1f", (a - b) / n }')
	log "  ${R[established,$n]} sessions, $held polls held, ${R[idle,$n]} KiB per idle session"
	for k in $(seq "$FANOUT_PACKETS"); do
		# the previous packet has reached everyone; let the new polls land
		sleep 0.5
		sql_value "$SEND_SQL" >/dev/null || die "comet.send failed"
		if ! wait_for "^round $k " 30; then
			PROBLEMS+=("$n sessions: packet $k did not reach every session within 30 s")
			log "error: ${PROBLEMS[-1]}"
			break
		fi
		log "  packet $k: $(awk -v k="$k" '$1 == "round" && $2 == k { print $3 }' "$LOADGEN_OUT") ms after the start"
	done
	loadgen_wait
	bridge_check "the fan-out to $n sessions"
	R[packets,$n]=$(value packets)
	R[p50,$n]=$(value latency_p50_us)
	R[p99,$n]=$(value latency_p99_us)
	R[max,$n]=$(value latency_max_us)
	# per packet: "packet T COUNT MIN P50 P99 MAX"
	R[worst_p99,$n]=$(awk '$1 == "packet" && $6 > w { w = $6 } END { print w }' "$LOADGEN_OUT")
	R[p99s,$n]=$(awk '$1 == "packet" { printf "%s%.1f", sep, $6 / 1000; sep = ", " }' "$LOADGEN_OUT")
	R[firsts,$n]=$(awk '$1 == "packet" { printf "%s%.1f", sep, $4 / 1000; sep = ", " }' "$LOADGEN_OUT")
	problems=$(( $(value sessions_lost) + $(value terminate_failures) + $(value http_errors) + $(value packets_missing) \
		+ $(value packets_duplicate) + $(value packets_without_t) + $(value gaps) ))
	R[problems,$n]=$problems
	[ "$problems" -eq 0 ] || PROBLEMS+=("$n sessions: $(grep -E '^(sessions_lost|terminate_failures|http_|packets_missing|packets_duplicate|packets_without_t|gaps)' "$LOADGEN_OUT" | tr '\n' ' ')")
	[ "${R[established,$n]}" -eq "$n" ] || PROBLEMS+=("$n sessions: only ${R[established,$n]} were set up ($(grep -E '^(setup_failures|connect_errors|http_status)' "$LOADGEN_OUT" | tr '\n' ' '))")
	cp "$LOADGEN_OUT" "$WORK/fanout-$n.result"
	bridge_stop
}

# single WHAT SQL: (c), one subscriber, SINGLE_PACKETS packets sent with SQL
# one at a time from one psql session; results into R[...,WHAT].
single() {
	local what=$1 statement=$2 _
	log "one subscriber: $SINGLE_PACKETS packets with $what"
	bridge_start "single-$what"
	loadgen_start "single-$what" 1 "$SINGLE_PACKETS" 60
	wait_for '^ready 1$' 20 || loadgen_fail "the single session was not set up"
	sleep 0.5
	{
		printf '%s\n' '\timing on'
		for _ in $(seq "$SINGLE_PACKETS"); do
			echo "$statement"
			echo "SELECT pg_sleep($SINGLE_PAUSE_S);"
		done
	} >"$WORK/single-$what.sql"
	"$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$BENCH_DB" -f "$WORK/single-$what.sql" \
		>"$WORK/single-$what.timing" || die "sending with $what failed"
	loadgen_wait
	bridge_check "the single-subscriber run with $what"
	R[packets,$what]=$(value packets)
	R[p50,$what]=$(value latency_p50_us)
	R[p99,$what]=$(value latency_p99_us)
	R[max,$what]=$(value latency_max_us)
	# the sending statement's own time as psql saw it (every other Time:)
	R[statement,$what]=$(awk '/^Time: / { if (++i % 2 == 1) print $2 }' "$WORK/single-$what.timing" \
		| sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int((NR + 1) / 2)] }')
	problems=$(( $(value sessions_lost) + $(value terminate_failures) + $(value http_errors) + $(value packets_missing) \
		+ $(value packets_duplicate) + $(value packets_without_t) + $(value gaps) ))
	[ "$problems" -eq 0 ] || PROBLEMS+=("one subscriber, $what: $(grep -E '^(sessions_lost|terminate_failures|http_|packets_missing|packets_duplicate|packets_without_t|gaps)' "$LOADGEN_OUT" | tr '\n' ' ')")
	[ "${R[packets,$what]:-0}" -eq "$SINGLE_PACKETS" ] \
		|| PROBLEMS+=("one subscriber, $what: ${R[packets,$what]:-0} of $SINGLE_PACKETS packets received")
	bridge_stop
}

for n in $SIZES; do
	fanout "$n"
done
single comet.send "$SEND_SQL"
single pg_notify "$NOTIFY_SQL"

for log_file in "$WORK"/bridge-*.log; do
	lines=$(grep -c -E 'warn|error' "$log_file")
	[ "$lines" -eq 0 ] || PROBLEMS+=("$(basename "$log_file"): $lines warnings or errors, e.g. $(grep -m 2 -E 'warn|error' "$log_file" | tr '\n' ' ')")
done

PG_VERSION=$(sql_value "SELECT version()") || die "no server version"
COMET_VERSION=$(sql_value "SELECT extversion FROM pg_extension WHERE extname = 'comet'")
SETTINGS=$(sql_value "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')")
BRIDGE_VERSION=$(bridge/comet-bridge --version 2>&1 | head -n 1)
MHD_VERSION=$(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null || echo unknown)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GCC_VERSION=$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)

# thousands N: N with a comma every three digits (locale-independent).
thousands() {
	echo "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'
}

# row NAME KEY [FORMAT [TARGET]]: one table row over the sizes run.
row() {
	local name=$1 key=$2 format=${3:-raw} target=${4:-} n v line="| $1 |"
	for n in $SIZES; do
		v=${R[$key,$n]:-}
		[ "$format" = ms ] && v=$(ms "$v")
		line="$line ${v:--} |"
	done
	echo "$line $target |"
}

# bridge_table: the results as Markdown.
bridge_table() {
	local n largest head sep
	largest=${SIZES##* }
	head="| figure |"
	sep="|---|"
	for n in $SIZES; do
		head="$head $(thousands "$n") sessions |"
		sep="$sep---:|"
	done
	echo "# comet-bridge benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $CORES cores${CPU_MODEL:+ ($CPU_MODEL)}, $(uname -sr); open files: $FILES"
	echo "- $BRIDGE_VERSION (libmicrohttpd $MHD_VERSION), comet extension $COMET_VERSION"
	echo "- PostgreSQL: $PG_VERSION; $SETTINGS"
	echo "- load generator: bench/bridge/loadgen.c (gcc $GCC_VERSION -O2), one process, one epoll loop," \
		"one keep-alive connection per session, on the same machine as the bridge and PostgreSQL"
	echo "- one channel; a fresh bridge (--max-sessions 20000 --max-pending 100000) for each column and each single-subscriber run"
	[ -z "$FILES_NOTE" ] || echo "- **$FILES_NOTE**"
	echo
	echo "$head target |"
	echo "$sep---|"
	row "sessions established" established
	row "polls held (the bridge's comet_requests_pending)" held
	row "bridge RSS before, KiB" rss_before
	row "bridge RSS with the sessions idle, KiB" rss_after
	row "**bridge RSS per idle session, KiB**" idle raw \
		"< 10 KiB: $(verdict "${R[idle,$largest]}" 10) at $(thousands "$largest")"
	row "fan-out p50, ms" p50 ms
	row "**fan-out p99, ms**" p99 ms "< 100 ms at 10,000: $(verdict "$(ms "${R[p99,$largest]}")" 100)"
	row "**fan-out worst p99 of $FANOUT_PACKETS, ms**" worst_p99 ms \
		"< 100 ms at 10,000: $(verdict "$(ms "${R[worst_p99,$largest]}")" 100)"
	row "fan-out max, ms" max ms
	row "p99 of each packet, ms" p99s
	row "first session reached (min) for each packet, ms" firsts
	row "packets received ($FANOUT_PACKETS per session)" packets
	row "errors (lost sessions, HTTP errors, missing or duplicate seqs, gaps)" problems raw 0
	echo
	echo "| one subscriber, $SINGLE_PACKETS packets $(awk -v s="$SINGLE_PAUSE_S" 'BEGIN { print s * 1000 }') ms apart | p50, ms | p99, ms | max, ms | sending statement p50, ms | target |"
	echo "|---|---:|---:|---:|---:|---|"
	echo "| comet.send (durable) | $(ms "${R[p50,comet.send]}") | $(ms "${R[p99,comet.send]}") |" \
		"$(ms "${R[max,comet.send]}") | ${R[statement,comet.send]:--} |" \
		"p50 < 1 ms: $(verdict "$(ms "${R[p50,comet.send]}")" 1) |"
	echo "| pg_notify (plain NOTIFY) | $(ms "${R[p50,pg_notify]}") | $(ms "${R[p99,pg_notify]}") |" \
		"$(ms "${R[max,pg_notify]}") | ${R[statement,pg_notify]:--} | |"
	echo
	echo "Latency is the receive time in the load generator minus the \`clock_timestamp()\` the packet" \
		"carries, taken inside the sending transaction before its commit: it includes the commit (for" \
		"comet.send a synchronous WAL flush), NOTIFY's delivery, the bridge, the loopback and the load" \
		"generator's own reading.  Fan-out figures pool the $FANOUT_PACKETS packets (N × $FANOUT_PACKETS" \
		"latencies); each packet is sent once every session has the previous one and 0.5 s have passed." \
		"\"Sending statement\" is the statement's time as psql measured it (execution and commit, seen from the client)."
	echo
	if [ ${#PROBLEMS[@]} -eq 0 ]; then
		echo "Checks: every session was set up and received every packet once, in seq order; no HTTP errors;" \
			"the bridge ran without warnings and exited cleanly on SIGTERM each time."
	else
		echo "Problems seen:"
		printf -- '- %s\n' "${PROBLEMS[@]}"
	fi
}

mkdir -p "$(dirname "$RESULTS")"
bridge_table >"$RESULTS" || die "could not write $RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$COMET_ROOT"/}"
