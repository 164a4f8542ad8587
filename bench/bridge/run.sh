#!/bin/bash
# run.sh — `make bench`, part 2: comet-bridge and Nchan side by side under
# the same long-poll load.
#
# Installs what is missing (the build's packages, nginx-light and
# libnginx-mod-nchan for Nchan, gnuplot-nox for the charts), builds and
# installs the extension, starts a throwaway PostgreSQL cluster (private
# directory under /tmp, own port and socket directory, default durability),
# and builds the two benchmark programs: loadgen.c (the subscribers: one
# process, one epoll loop, one keep-alive connection per session, speaking
# comet's protocol or Nchan's long-poll protocol) and publish.c (the
# publisher: comet.send or pg_notify through libpq, or POST to Nchan).
# Every figure starts a fresh server on a free 127.0.0.1 port: a
# comet-bridge, or an nginx with the Nchan module whose configuration this
# script writes into its own temporary directory (its own pid file, logs
# and temp paths; the system's nginx is never touched).  The scenarios, each
# run against both servers with the same sessions, message size and counts:
#
#   idle       1,000 and 10,000 sessions each holding a poll: the server's
#              RSS before and after, per session;
#   fan-out    with those sessions on one channel, FANOUT_MESSAGES messages,
#              each sent once everyone has the previous one: latency p50,
#              p99, max, and the time until everyone has a message;
#   sustained  1,000 sessions over 100 channels, messages at increasing
#              rates (RATES, STEP_SECONDS each) until delivery falls behind:
#              the highest rate held with p99 under 100 ms;
#   single     one session, SINGLE_MESSAGES messages one at a time: latency
#              from the publisher's call to receipt (comet.send, pg_notify;
#              POST for Nchan);
#
# and, for what bounds comet, PostgreSQL alone (publish.c's own LISTEN
# connection, no bridge): its single-message latency and the rates it holds.
# Then comet alone, scaled out (scaleout.sh):
#
#   scaleout   9,000 sessions on one channel and the fan-out's messages:
#              one bridge holding them all, then three bridges (--node-id
#              b1, b2, b3, one database) holding 3,000 each, behind nginx
#              configured from examples/nginx, and the same three reached
#              directly (the load generator spreads the sessions itself).
#
# Writes bench/results/latest.md (comet, Nchan and comet/Nchan per figure;
# the scale-out's own table) and the charts bench/results/*.png, and prints
# the table.  Only the loopback interface and a Unix socket are used;
# servers, load generator, publisher and cluster are stopped and removed on
# exit, also on failure or interrupt.  BENCH_SIZES, BENCH_RATES,
# BENCH_STEP_SECONDS, BENCH_SINGLE_MESSAGES and BENCH_SCALEOUT_SESSIONS
# override the scenario sizes for quick trials; BENCH_ONLY (a list of
# fanout, sustained, single, scaleout) runs only those scenarios and then
# writes bench/results/tmp/latest.md instead (no charts), and
# BENCH_SCALEOUT=0 leaves the scale-out out.
set -uo pipefail
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$COMET_ROOT" || exit 1

PSQL=$PG_BIN/psql
BENCH_DB=comet_bench
CHANNEL=bench					# channels are bench1, bench2, ...
RESULTS_DIR=$COMET_ROOT/bench/results
RESULTS=$RESULTS_DIR/latest.md
SIZES=${BENCH_SIZES:-"1000 10000"}
FANOUT_MESSAGES=10
SUSTAINED_SESSIONS=1000
SUSTAINED_CHANNELS=100
RATES=${BENCH_RATES:-"100 200 500 1000 2000 3000 4000 5000 7000 10000 15000 20000"}
STEP_SECONDS=${BENCH_STEP_SECONDS:-4}
# a step's messages must all arrive within this long after its last one
DRAIN_SECONDS=1
# the rates stop rising after this many steps in a row that did not hold
# (one alone can be a hiccup of a shared machine)
STEPS_FAILED_MAX=2
P99_LIMIT_MS=100
SINGLE_MESSAGES=${BENCH_SINGLE_MESSAGES:-200}
SINGLE_INTERVAL_MS=20
MESSAGE_SIZE=100				# bytes of JSON per message, both servers
# the sustained publisher's connections (libpq or keep-alive HTTP): enough
# that neither server waits for the publisher (see the README)
PUBLISH_CONNECTIONS=8
SERVERS="comet nchan"
NCHAN_PACKAGES="nginx-light libnginx-mod-nchan"
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
NGINX=/usr/sbin/nginx
# descriptors a server needs besides one per session (listen socket, epoll
# sets, database connections, logs, the publisher's connections)
FILES_SPARE=64
CORES=$(nproc)
CLOCK_TICKS=$(getconf CLK_TCK)
# what else the machine was doing: load averages now and at the end
LOAD_START=$(cut -d ' ' -f 1-3 /proc/loadavg)

# The scenarios to run (BENCH_ONLY, BENCH_SCALEOUT) into RUN[...]; a run
# without all of fanout, sustained and single is partial: its table goes
# to bench/results/tmp/, so that the published results stay whole.
SCENARIOS="fanout sustained single scaleout"
declare -A RUN
if [ -n "${BENCH_ONLY:-}" ]; then
	for scenario in ${BENCH_ONLY//,/ }; do
		case " $SCENARIOS " in
		*" $scenario "*) RUN[$scenario]=1 ;;
		*) die "BENCH_ONLY: no scenario '$scenario' (a list of: $SCENARIOS)" ;;
		esac
	done
else
	for scenario in $SCENARIOS; do RUN[$scenario]=1; done
fi
[ "${BENCH_SCALEOUT:-1}" = 0 ] && unset 'RUN[scaleout]'
[ ${#RUN[@]} -gt 0 ] || die "no scenario left to run (BENCH_ONLY=${BENCH_ONLY:-}, BENCH_SCALEOUT=${BENCH_SCALEOUT:-})"
PARTIAL=""
if [ -z "${RUN[fanout]:-}" ] || [ -z "${RUN[sustained]:-}" ] || [ -z "${RUN[single]:-}" ]; then
	for scenario in $SCENARIOS; do
		[ -z "${RUN[$scenario]:-}" ] || PARTIAL="$PARTIAL $scenario"
	done
	PARTIAL=${PARTIAL# }
	RESULTS=$RESULTS_DIR/tmp/latest.md
	log "only: $PARTIAL (results to ${RESULTS#"$COMET_ROOT"/}, no charts)"
fi

# shellcheck disable=SC2086  # lists of package names
deps_install $COMET_PACKAGES_BUILD $NCHAN_PACKAGES gnuplot-nox || exit 1
build_install || die "build failed"
[ -x bridge/comet-bridge ] || die "bridge/comet-bridge was not built"
[ -f "$NCHAN_MODULE" ] || die "$NCHAN_MODULE is missing (libnginx-mod-nchan)"
[ -x "$NGINX" ] || die "$NGINX is missing (nginx-light)"

# Every session is a socket in the server and one in the load generator:
# raise the open-file limit as far as the hard limit allows (all inherit
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
[ "$FILES" = unlimited ] && FILES=1048576
LARGEST=${SIZES##* }

WORK=$(mktemp -d /tmp/comet-bench-bridge.XXXXXX)
# nginx's own directory: its workers run as an unprivileged user and must
# reach their temp paths, so it cannot live in WORK (the cluster's, 0700)
NGINX_DIR=$(mktemp -d /tmp/comet-bench-nginx.XXXXXX)
chmod 755 "$NGINX_DIR"
BIN=$WORK/bin
# shellcheck source=scaleout.sh
. "$COMET_ROOT/bench/bridge/scaleout.sh"
SERVER_KIND=
SERVER_PID=
LOADGEN_PID=
PUBLISH_PID=
cleanup() {
	exec 7>&- 2>/dev/null
	[ -n "$PUBLISH_PID" ] && kill "$PUBLISH_PID" 2>/dev/null
	[ -n "$LOADGEN_PID" ] && kill -KILL "$LOADGEN_PID" 2>/dev/null
	server_stop >/dev/null 2>&1
	scaleout_stop >/dev/null 2>&1
	cluster_stop "$WORK"
	rm -rf "$WORK" "$NGINX_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the load generator and the publisher"
mkdir -p "$BIN"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$BIN/loadgen" bench/bridge/loadgen.c \
	|| die "bench/bridge/loadgen.c does not build"
# shellcheck disable=SC2046  # pkg-config prints a list of options
gcc -std=c11 -O2 -Wall -Wextra -Werror $(pkg-config --cflags libpq) -o "$BIN/publish" \
	bench/bridge/publish.c $(pkg-config --libs libpq) || die "bench/bridge/publish.c does not build"

cluster_init "$WORK"
cluster_start "$WORK"

# sql_value QUERY: the single value QUERY returns.
sql_value() {
	"$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "$1"
}

log "creating database $BENCH_DB"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $BENCH_DB" \
	|| die "could not create the database"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" >/dev/null <<SQL || die "could not set up the database"
CREATE EXTENSION comet;
SELECT comet.grant('$CHANNEL%', ARRAY['subscribe']);
SQL

PROBLEMS=()
# problem TEXT: remember TEXT for the results and say it now.
problem() {
	PROBLEMS+=("$1")
	log "problem: $1"
}

# ms MICROSECONDS: in milliseconds, two decimals ("-" when empty).
ms() {
	awk -v us="$1" 'BEGIN { if (us == "") print "-"; else printf "%.2f", us / 1000 }'
}

# thousands N: N with a comma every three digits (locale-independent).
thousands() {
	echo "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'
}

# ratio A B: A/B with two decimals, "-" when either is missing or B is not
# positive (a ratio of latencies that can be negative means nothing).
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 <= 0 || a + 0 < 0) print "-"; else printf "%.2f", a / b }'
}

# ---- servers ---------------------------------------------------------------

# http_get PATH: the body of GET PATH from the server (plain HTTP over
# bash's /dev/tcp, so that no HTTP client is needed).
http_get() {
	http_get_from "$PORT" "$1"
}

# http_get_from PORT PATH: the body of GET PATH from 127.0.0.1:PORT.
http_get_from() {
	{
		exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
		printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
		timeout 5 cat <&3
		exec 3<&-
	} 2>/dev/null | tr -d '\r' | sed '1,/^$/d'
}

# nginx_config: Nchan's configuration for a run on $PORT.
nginx_config() {
	cat <<NGINX
# written by bench/bridge/run.sh for one benchmark run
load_module $NCHAN_MODULE;
# One worker process: comet-bridge is one process with one event loop, so
# one nginx worker (one event loop) is the like-for-like comparison.  More
# workers would also take the machine's cores from PostgreSQL and the load
# generator, and Nchan would pass each message between them.
worker_processes 1;
# in the foreground: the script started it and stops it by its pid
daemon off;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error-$SERVER_TAG.log warn;
worker_rlimit_nofile $FILES;
events {
    worker_connections $((LARGEST + 1024));
}
http {
    # comet-bridge logs no requests either (--log-level warn)
    access_log off;
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    # a busy subscriber's connection must not be closed every 1,000
    # answers (nginx's default), nor the publisher's between messages
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        # the same listen backlog as comet-bridge's
        listen 127.0.0.1:$PORT backlog=1024;
        location ~ ^/sub/(\\w+)\$ {
            nchan_subscriber longpoll;
            nchan_channel_id \$1;
            # like a comet session: what is published after it subscribed
            nchan_subscriber_first_message newest;
            # like the bridge's --wait 60
            nchan_subscriber_timeout 60s;
        }
        location ~ ^/pub/(\\w+)\$ {
            nchan_publisher http;
            nchan_channel_id \$1;
            # kept per channel for subscribers between two polls
            nchan_message_buffer_length 1000;
            nchan_message_timeout 5m;
        }
        location = /nchan_status {
            nchan_stub_status;
        }
    }
}
NGINX
}

# server_start KIND TAG: a fresh comet-bridge or nginx (KIND comet or
# nchan) on a free port; sets SERVER_KIND, SERVER_PID, SERVER_LOG, PORT.  A
# port free when chosen can be taken before the server binds it (the load
# generator's connections use ephemeral ports): then another.
server_start() {
	local kind=$1 attempt _
	SERVER_KIND=$kind
	SERVER_TAG=$2
	for attempt in 1 2 3 4 5; do
		PORT=$(free_port)
		if [ "$kind" = comet ]; then
			SERVER_LOG=$WORK/bridge-$SERVER_TAG.log
			bridge/comet-bridge --listen "127.0.0.1:$PORT" --db "dbname=$BENCH_DB" \
				--max-sessions 20000 --max-pending 100000 --log-level warn >"$SERVER_LOG" 2>&1 &
		else
			SERVER_LOG=$NGINX_DIR/error-$SERVER_TAG.log
			mkdir -p "$NGINX_DIR/tmp"
			nginx_config >"$NGINX_DIR/nginx.conf"
			"$NGINX" -p "$NGINX_DIR/" -e "$SERVER_LOG" -c "$NGINX_DIR/nginx.conf" \
				>"$NGINX_DIR/stdout-$SERVER_TAG.log" 2>&1 &
		fi
		SERVER_PID=$!
		for _ in $(seq 100); do
			if [ "$kind" = comet ]; then
				grep -q "listening on" "$SERVER_LOG" && return 0
			else
				http_get /nchan_status | grep -q '^subscribers:' && return 0
			fi
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=
		grep -q "Address already in use" "$SERVER_LOG" || break
		log "port $PORT was taken (attempt $attempt)"
		# nginx appends to its log: the next attempt starts a clean one
		rm -f "$SERVER_LOG"
	done
	cat "$SERVER_LOG" >&2
	die "the $kind server did not start"
}

# server_stop: SIGTERM for the bridge (as an operator would), SIGQUIT for
# nginx (its graceful stop); remember a bad exit.
server_stop() {
	local status _
	[ -n "$SERVER_PID" ] || return 0
	if [ "$SERVER_KIND" = comet ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null
	else
		kill -QUIT "$SERVER_PID" 2>/dev/null
	fi
	for _ in $(seq 50); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		problem "the $SERVER_KIND server did not stop within 5 s ($SERVER_LOG)"
		# nginx's workers first: once the master is gone they cannot be told apart
		[ "$SERVER_KIND" = nchan ] && server_children | xargs -r kill -KILL 2>/dev/null
		kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	wait "$SERVER_PID" 2>/dev/null
	status=$?
	[ "$status" -eq 0 ] || problem "the $SERVER_KIND server exited with status $status"
	SERVER_PID=
}

# server_check WHAT: remember when the server is no longer running.
server_check() {
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		problem "the $SERVER_KIND server died during $1; last log lines: $(tail -n 3 "$SERVER_LOG" | tr '\n' ' ')"
		return 1
	fi
}

# server_children: the pids of the server's child processes (nginx's workers).
server_children() {
	process_children "$SERVER_PID"
}

# process_children PID: the pids of PID's child processes.
process_children() {
	# /proc/PID/stat: "PID (COMM) STATE PPID ..."; COMM may hold spaces
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v parent="$1" '{
		rest = $0
		sub(/^.*\) /, "", rest)
		split(rest, f, " ")
		if (f[2] == parent) print $1 }'
}

# server_rss_kib: the server's resident set in KiB; for nginx the master's
# and its workers' together.
server_rss_kib() {
	local pid total=0 rss
	for pid in "$SERVER_PID" $([ "$SERVER_KIND" = nchan ] && server_children); do
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		total=$((total + ${rss:-0}))
	done
	echo "$total"
}

# server_held: polls the server itself says it holds (the bridge's
# comet_requests_pending, Nchan's subscriber count).
server_held() {
	if [ "$SERVER_KIND" = comet ]; then
		http_get /metrics | awk '$1 == "comet_requests_pending" { print $2; exit }'
	else
		http_get /nchan_status | awk '$1 == "subscribers:" { print $2; exit }'
	fi
}

# cpu_ticks PID...: CPU time (user and system, in clock ticks) of the
# processes PID and of their live children; for PID itself also of its
# children that have ended (so a PostgreSQL backend that exits keeps
# counting, through the postmaster).
cpu_ticks() {
	# /proc/PID/stat: "PID (COMM) STATE PPID ..."; COMM may hold spaces
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v pids=" $* " '{
		rest = $0
		sub(/^.*\) /, "", rest)
		split(rest, f, " ")
		if (index(pids, " " $1 " ")) t += f[12] + f[13] + f[14] + f[15]
		else if (index(pids, " " f[2] " ")) t += f[12] + f[13] }
		END { print t + 0 }'
}

# postgres_pid: the postmaster of the benchmark's cluster.
postgres_pid() {
	head -n 1 "$WORK/data/postmaster.pid"
}

# cpu_percent TICKS SECONDS: TICKS of CPU over SECONDS of wall time, in %
# of one core.
cpu_percent() {
	awk -v t="$1" -v s="$2" -v hz="$CLOCK_TICKS" 'BEGIN { if (s > 0) printf "%.0f", 100 * t / hz / s }'
}

# ---- load generator and publisher -------------------------------------------

# loadgen_start TAG SESSIONS CHANNELS EXPECT DURATION [SAMPLES]: the load
# generator in the background against the current server (sets
# LOADGEN_PID, LOADGEN_OUT).
loadgen_start() {
	local samples=()
	[ $# -ge 6 ] && samples=(--samples "$6")
	LOADGEN_OUT=$WORK/loadgen-$1.out
	"$BIN/loadgen" --protocol "$SERVER_KIND" --port "$PORT" --sessions "$2" --channel "$CHANNEL" \
		--channels "$3" --expect "$4" --duration "$5" "${samples[@]}" \
		>"$LOADGEN_OUT" 2>"$WORK/loadgen-$1.err" &
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

# wait_for FILE PATTERN SECONDS [PID]: wait until FILE has a line matching
# PATTERN; fails when PID (default the load generator) ends or time runs
# out first.
wait_for() {
	local file=$1 pattern=$2 deadline=$((SECONDS + $3)) pid=${4:-$LOADGEN_PID}
	while [ $SECONDS -lt "$deadline" ]; do
		grep -q "$pattern" "$file" && return 0
		kill -0 "$pid" 2>/dev/null || { grep -q "$pattern" "$file"; return; }
		sleep 0.02
	done
	return 1
}

# value FILE KEY: the value of the (last) "KEY value" line in FILE.
value() {
	awk -v k="$2" '$1 == k { v = $2 } END { print v }' "$1"
}

# loadgen_problems WHAT: remember what the load generator saw go wrong.
loadgen_problems() {
	local bad
	bad=$(awk '$1 ~ /^(sessions_lost|terminate_failures|http_errors|packets_missing|packets_duplicate|messages_missing|messages_duplicate|packets_without_t|gaps|setup_failures|connect_errors)$/ && $2 != 0 { printf "%s %s, ", $1, $2 }' "$LOADGEN_OUT")
	[ -z "$bad" ] || problem "$1: ${bad%, } ($(basename "$LOADGEN_OUT"))"
}

# publisher_target WHAT: the publisher's options for sending with WHAT
# (comet: comet.send, notify: pg_notify, nchan: POST to the current
# server) into the array TARGET.
publisher_target() {
	case $1 in
	comet) TARGET=(--to comet --db "dbname=$BENCH_DB") ;;
	notify) TARGET=(--to notify --db "dbname=$BENCH_DB") ;;
	nchan) TARGET=(--to nchan --port "$PORT") ;;
	esac
}

# ---- scenarios -----------------------------------------------------------------

# fanout KIND N: idle memory and fan-out with N sessions on one channel;
# results into R[...,KIND,N].
declare -A R
fanout() {
	local kind=$1 n=$2 tag="fanout-$1-$2" before after held server_ticks _
	log "$kind, $n sessions: setting up"
	server_start "$kind" "$tag"
	before=$(server_rss_kib)
	loadgen_start "$tag" "$n" 1 "$FANOUT_MESSAGES" 180 "$WORK/samples-$tag.txt"
	wait_for "$LOADGEN_OUT" '^ready ' 90 || loadgen_fail "$n sessions were not set up within 90 s"
	R[established,$kind,$n]=$(value "$LOADGEN_OUT" ready)
	[ "${R[established,$kind,$n]}" -gt 0 ] || loadgen_fail "no session could be set up"
	for _ in $(seq 150); do
		[ "$(server_held)" = "${R[established,$kind,$n]}" ] && break
		sleep 0.1
	done
	sleep 2
	held=$(server_held)
	after=$(server_rss_kib)
	server_check "the idle phase with $n sessions"
	R[held,$kind,$n]=${held:--}
	R[rss_before,$kind,$n]=$before
	R[rss_after,$kind,$n]=$after
	R[idle,$kind,$n]=$(awk -v a="$after" -v b="$before" -v n="${R[established,$kind,$n]}" \
		'BEGIN { printf "%.1f", (a - b) / n }')
	log "  ${R[established,$kind,$n]} sessions, $held polls held, ${R[idle,$kind,$n]} KiB per idle session"
	server_ticks=$(cpu_ticks "$SERVER_PID")
	fanout_send "$tag" "$kind" "$kind, $n sessions"
	# CPU per delivery, in µs: what answering a poll and taking the next
	# one costs the server, and what reading an answer and polling again
	# costs the load generator
	R[server_cpu,$kind,$n]=$(per_delivery $(( $(cpu_ticks "$SERVER_PID") - server_ticks )) "$n")
	R[loadgen_cpu,$kind,$n]=$(loadgen_per_delivery "$n")
	fanout_publisher_end "$tag" "$kind, $n sessions"
	loadgen_wait
	server_check "the fan-out to $n sessions"
	fanout_results "$kind" "$n" "$kind"
	server_stop
}

# fanout_send TAG WHAT LABEL: with the load generator's sessions set up,
# FANOUT_MESSAGES messages with WHAT (see publisher_target), each once
# every session has the previous one and 0.5 s have passed.  Leaves the
# publisher running (fanout_publisher_end ends it).
fanout_send() {
	local tag=$1 label=$3 k
	mkfifo "$WORK/publish-$tag.in"
	publisher_target "$2"
	"$BIN/publish" "${TARGET[@]}" --channel "$CHANNEL" --size "$MESSAGE_SIZE" --stdin \
		<"$WORK/publish-$tag.in" >"$WORK/publish-$tag.out" 2>"$WORK/publish-$tag.err" &
	PUBLISH_PID=$!
	exec 7>"$WORK/publish-$tag.in"
	for k in $(seq "$FANOUT_MESSAGES"); do
		# the previous message has reached everyone; let the new polls land
		sleep 0.5
		kill -0 "$PUBLISH_PID" 2>/dev/null \
			|| die "the publisher ended early: $(head -c 300 "$WORK/publish-$tag.err")"
		echo >&7
		if ! wait_for "$LOADGEN_OUT" "^round $k " 30; then
			problem "$label: message $k did not reach every session within 30 s"
			break
		fi
	done
}

# fanout_publisher_end TAG LABEL: close the publisher's input, wait for it.
fanout_publisher_end() {
	exec 7>&-
	wait "$PUBLISH_PID" || problem "$2: the publisher failed: $(head -c 300 "$WORK/publish-$1.err")"
	PUBLISH_PID=
}

# per_delivery TICKS N: TICKS of CPU over the N × FANOUT_MESSAGES
# deliveries of a fan-out, in µs per delivery.
per_delivery() {
	awk -v t="$1" -v d="$(($2 * FANOUT_MESSAGES))" -v hz="$CLOCK_TICKS" \
		'BEGIN { printf "%.1f", t / hz * 1e6 / d }'
}

# loadgen_per_delivery N: the load generator's CPU per delivery of a
# fan-out to N sessions, in µs, from its own reports: CPU at its last round
# less CPU when it was ready (it is idle in between but for the fan-out,
# and ends too soon after the last round for /proc to be read then).
loadgen_per_delivery() {
	awk -v k="$FANOUT_MESSAGES" -v d="$(($1 * FANOUT_MESSAGES))" '
		$1 == "ready" { ready = $3 }
		$1 == "round" && $2 == k { last = $4 }
		END { if (ready != "" && last != "") printf "%.1f", (last - ready) / d }' "$LOADGEN_OUT"
}

# fanout_results KIND N LABEL: the ended load generator's figures of a
# fan-out to N sessions into R[...,KIND,N]; remembers what went wrong.
fanout_results() {
	local kind=$1 n=$2 label=$3
	R[packets,$kind,$n]=$(value "$LOADGEN_OUT" packets)
	R[p50,$kind,$n]=$(value "$LOADGEN_OUT" latency_p50_us)
	R[p99,$kind,$n]=$(value "$LOADGEN_OUT" latency_p99_us)
	R[max,$kind,$n]=$(value "$LOADGEN_OUT" latency_max_us)
	# per message: "packet T COUNT MIN P50 P99 MAX"; everyone has it at MAX
	R[all,$kind,$n]=$(awk '$1 == "packet" { print $7 }' "$LOADGEN_OUT" | sort -n \
		| awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
	R[all_max,$kind,$n]=$(awk '$1 == "packet" && $7 > m { m = $7 } END { print m }' "$LOADGEN_OUT")
	R[first,$kind,$n]=$(awk '$1 == "packet" { print $4 }' "$LOADGEN_OUT" | sort -n \
		| awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
	R[alls,$kind,$n]=$(awk '$1 == "packet" { printf "%s%.1f", sep, $7 / 1000; sep = ", " }' "$LOADGEN_OUT")
	R[rate,$kind,$n]=$(awk -v n="$n" -v all="${R[all,$kind,$n]}" \
		'BEGIN { if (all > 0) printf "%.0f", n / (all / 1e6) }')
	loadgen_problems "$label, fan-out to $n"
	[ "${R[established,$kind,$n]}" -eq "$n" ] || problem "$label, $n sessions: only ${R[established,$kind,$n]} were set up"
	[ "${R[packets,$kind,$n]:-0}" -eq $((n * FANOUT_MESSAGES)) ] \
		|| problem "$label, fan-out to $n: ${R[packets,$kind,$n]:-0} of $((n * FANOUT_MESSAGES)) messages received"
}

# sustained_step KIND K RATE PUBLISH_OUT: one step's results from the
# load generator's report K into S[...,KIND,RATE]; returns 1 when the step
# did not hold (p99 over the limit, or messages not delivered in time).
declare -A S
sustained_step() {
	local kind=$1 k=$2 rate=$3 out=$4 line count expected fanout=$((SUSTAINED_SESSIONS / SUSTAINED_CHANNELS))
	line=$(awk -v k="$k" '$1 == "step" && $2 == k' "$LOADGEN_OUT" | tail -n 1)
	expected=$(( $(value "$out" messages) * fanout ))
	count=$(echo "$line" | awk '{ print $3 + 0 }')
	S[p50,$kind,$rate]=$(echo "$line" | awk '{ print $4 }')
	S[p99,$kind,$rate]=$(echo "$line" | awk '{ print $5 }')
	S[delivered,$kind,$rate]=$(echo "$line" | awk -v f="$fanout" \
		'{ if ($8 > $7) printf "%.0f", $3 / f / (($8 - $7) / 1e6) }')
	S[share,$kind,$rate]=$(awk -v c="$count" -v e="$expected" 'BEGIN { if (e > 0) printf "%.1f", 100 * c / e }')
	S[publisher,$kind,$rate]=$(value "$out" achieved_rate)
	log "  $rate msg/s: delivered ${S[delivered,$kind,$rate]:-0} msg/s (${S[share,$kind,$rate]:-0}% of the deliveries), p99 $(ms "${S[p99,$kind,$rate]}") ms, publisher ${S[publisher,$kind,$rate]:-?} msg/s"
	[ "$count" -eq "$expected" ] && [ -n "${S[p99,$kind,$rate]}" ] \
		&& [ "${S[p99,$kind,$rate]}" -lt $((P99_LIMIT_MS * 1000)) ]
}

# sustained KIND: SUSTAINED_SESSIONS sessions over SUSTAINED_CHANNELS
# channels, RATES one after another until STEPS_FAILED_MAX in a row do not
# hold; results into S[...] and R[held_rate,KIND] (the highest that held).
sustained() {
	local kind=$1 tag="sustained-$1" k=0 failed=0 rate out server_ticks loadgen_ticks database_ticks started _
	log "$kind, sustained: $SUSTAINED_SESSIONS sessions over $SUSTAINED_CHANNELS channels"
	server_start "$kind" "$tag"
	loadgen_start "$tag" "$SUSTAINED_SESSIONS" "$SUSTAINED_CHANNELS" 0 900
	wait_for "$LOADGEN_OUT" '^ready ' 60 || loadgen_fail "the sessions were not set up within 60 s"
	for _ in $(seq 100); do
		[ "$(server_held)" = "$SUSTAINED_SESSIONS" ] && break
		sleep 0.1
	done
	sleep 1
	R[held_rate,$kind]=0
	for rate in $RATES; do
		k=$((k + 1))
		out=$WORK/publish-$tag-$rate.out
		server_ticks=$(cpu_ticks "$SERVER_PID")
		loadgen_ticks=$(cpu_ticks "$LOADGEN_PID")
		database_ticks=$(cpu_ticks "$(postgres_pid)")
		started=$EPOCHREALTIME
		publisher_target "$kind"
		"$BIN/publish" "${TARGET[@]}" --channel "$CHANNEL" --channels "$SUSTAINED_CHANNELS" \
			--size "$MESSAGE_SIZE" --connections "$PUBLISH_CONNECTIONS" --rate "$rate" \
			--duration "$STEP_SECONDS" --step "$k" >"$out" 2>"${out%.out}.err" \
			|| problem "$kind, sustained $rate msg/s: the publisher failed: $(head -c 300 "${out%.out}.err")"
		sleep "$DRAIN_SECONDS"
		started=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
		S[cpu_server,$kind,$rate]=$(cpu_percent $(( $(cpu_ticks "$SERVER_PID") - server_ticks )) "$started")
		S[cpu_loadgen,$kind,$rate]=$(cpu_percent $(( $(cpu_ticks "$LOADGEN_PID") - loadgen_ticks )) "$started")
		S[cpu_database,$kind,$rate]=$(cpu_percent $(( $(cpu_ticks "$(postgres_pid)") - database_ticks )) "$started")
		S[cpu_publisher,$kind,$rate]=$(awk -v us="$(value "$out" cpu_us)" -v s="$started" \
			'BEGIN { if (us != "" && s > 0) printf "%.0f", 100 * us / 1e6 / s }')
		kill -USR1 "$LOADGEN_PID"
		wait_for "$LOADGEN_OUT" "^reported $k\$" 30 || loadgen_fail "no report from the load generator"
		S[ran,$kind,$rate]=1
		if sustained_step "$kind" "$k" "$rate" "$out"; then
			S[held,$kind,$rate]=yes
			R[held_rate,$kind]=$rate
			failed=0
		else
			S[held,$kind,$rate]=no
			failed=$((failed + 1))
			[ "$failed" -lt "$STEPS_FAILED_MAX" ] || break
		fi
	done
	kill -TERM "$LOADGEN_PID"
	loadgen_wait
	server_check "the sustained run"
	loadgen_problems "$kind, sustained (the step that did not hold may explain these)"
	server_stop
}

# sustained_database: every rate comet's sustained run reached, through
# PostgreSQL alone: comet.send committed by the same publisher, heard on its
# own LISTEN connection, no bridge; results into S[...,database,RATE] and
# R[held_rate,database].  It does not stop at a step that does not hold:
# what matters is how fast the commits go where comet stopped holding.
sustained_database() {
	local rate out p99 heard sent database_ticks started
	log "PostgreSQL alone, sustained (comet.send to a LISTEN connection, no bridge)"
	R[held_rate,database]=0
	for rate in $RATES; do
		[ -n "${S[ran,comet,$rate]:-}" ] || continue
		out=$WORK/publish-database-$rate.out
		database_ticks=$(cpu_ticks "$(postgres_pid)")
		started=$EPOCHREALTIME
		"$BIN/publish" --to comet --db "dbname=$BENCH_DB" --listen --channel "$CHANNEL" \
			--channels "$SUSTAINED_CHANNELS" --size "$MESSAGE_SIZE" --connections "$PUBLISH_CONNECTIONS" \
			--rate "$rate" --duration "$STEP_SECONDS" >"$out" 2>"${out%.out}.err"
		started=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
		S[cpu_database,database,$rate]=$(cpu_percent $(( $(cpu_ticks "$(postgres_pid)") - database_ticks )) "$started")
		S[cpu_publisher,database,$rate]=$(awk -v us="$(value "$out" cpu_us)" -v s="$started" \
			'BEGIN { if (us != "" && s > 0) printf "%.0f", 100 * us / 1e6 / s }')
		sent=$(value "$out" messages)
		heard=$(value "$out" heard)
		p99=$(value "$out" heard_p99_us)
		S[ran,database,$rate]=1
		S[p99,database,$rate]=$p99
		S[publisher,database,$rate]=$(value "$out" achieved_rate)
		S[delivered,database,$rate]=${S[publisher,database,$rate]}
		log "  $rate msg/s: committed ${S[publisher,database,$rate]:-?} msg/s, heard $heard of $sent, p99 $(ms "$p99") ms"
		if [ -n "$p99" ] && [ "$heard" = "$sent" ] && [ "$p99" -lt $((P99_LIMIT_MS * 1000)) ]; then
			S[held,database,$rate]=yes
			R[held_rate,database]=$rate
		else
			S[held,database,$rate]=no
		fi
	done
}

# percentiles: "P50 P99" of the numbers on stdin (nearest rank).
percentiles() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR * 50 + 99) / 100)], v[int((NR * 99 + 99) / 100)] }'
}

# single WHAT KIND: one subscriber, SINGLE_MESSAGES messages one at a time;
# WHAT is the publisher's target (comet, notify, nchan), KIND the server.
# Results into R[...,WHAT].
single() {
	local what=$1 kind=$2 tag="single-$1" out _
	log "one subscriber: $SINGLE_MESSAGES messages with $what"
	server_start "$kind" "$tag"
	loadgen_start "$tag" 1 1 "$SINGLE_MESSAGES" 120 "$WORK/samples-$tag.txt"
	wait_for "$LOADGEN_OUT" '^ready 1 ' 20 || loadgen_fail "the single session was not set up"
	for _ in $(seq 50); do
		[ "$(server_held)" = 1 ] && break
		sleep 0.1
	done
	out=$WORK/publish-$tag.out
	publisher_target "$what"
	"$BIN/publish" "${TARGET[@]}" --channel "$CHANNEL" --size "$MESSAGE_SIZE" \
		--count "$SINGLE_MESSAGES" --interval-ms "$SINGLE_INTERVAL_MS" >"$out" 2>"${out%.out}.err" \
		|| problem "one subscriber, $what: the publisher failed: $(head -c 300 "${out%.out}.err")"
	loadgen_wait
	server_check "the single-subscriber run with $what"
	single_results "$what" "$WORK/samples-$tag.txt" "$out"
	R[packets,$what]=$(value "$LOADGEN_OUT" packets)
	loadgen_problems "one subscriber, $what"
	[ "${R[packets,$what]:-0}" -eq "$SINGLE_MESSAGES" ] \
		|| problem "one subscriber, $what: ${R[packets,$what]:-0} of $SINGLE_MESSAGES messages received"
	server_stop
}

# single_results WHAT RECEIVED PUBLISHED: latencies from the call's start
# and from its return to receipt, into R[...,WHAT]; RECEIVED has the load
# generator's "SESSION CHANNEL N S T RECEIVED" lines, PUBLISHED the
# publisher's "sent CHANNEL N T START RETURN" lines.
single_results() {
	local what=$1 received=$2 published=$3 p
	awk '{ print $NF - $(NF - 1) }' "$received" >"$WORK/latency-$what.txt"
	p=$(percentiles <"$WORK/latency-$what.txt")
	R[start_p50,$what]=${p% *}
	R[start_p99,$what]=${p#* }
	p=$(awk 'NR == FNR { if ($1 == "sent") returned[$3] = $6; next }
		($(NF - 3) in returned) { print $NF - returned[$(NF - 3)] }' "$published" "$received" | percentiles)
	R[return_p50,$what]=${p% *}
	R[return_p99,$what]=${p#* }
	p=$(awk '$1 == "sent" { print $6 - $5 }' "$published" | percentiles)
	R[call_p50,$what]=${p% *}
}

# single_database WHAT: the single-subscriber measurement through
# PostgreSQL alone (publish.c's own LISTEN connection, no bridge).
single_database() {
	local what=$1 out=$WORK/publish-database-single-$1.out
	log "PostgreSQL alone: $SINGLE_MESSAGES messages with $what to a LISTEN connection"
	publisher_target "$what"
	"$BIN/publish" "${TARGET[@]}" --listen --channel "$CHANNEL" --size "$MESSAGE_SIZE" \
		--count "$SINGLE_MESSAGES" --interval-ms "$SINGLE_INTERVAL_MS" >"$out" 2>"${out%.out}.err" \
		|| problem "PostgreSQL alone, $what: the publisher failed: $(head -c 300 "${out%.out}.err")"
	# as the load generator writes its samples: SESSION CHANNEL N S T RECEIVED
	awk '$1 == "heard" { print 0, $2, $3, 0, $4, $5 }' "$out" >"$WORK/heard-$what.txt"
	single_results "database-$what" "$WORK/heard-$what.txt" "$out"
}

# ---- the run ---------------------------------------------------------------------

if [ -n "${RUN[fanout]:-}" ]; then
	for n in $SIZES; do
		for kind in $SERVERS; do
			fanout "$kind" "$n"
		done
	done
fi
if [ -n "${RUN[sustained]:-}" ]; then
	for kind in $SERVERS; do
		sustained "$kind"
	done
	sustained_database
fi
if [ -n "${RUN[single]:-}" ]; then
	single comet comet
	single notify comet
	single nchan nchan
	single_database comet
	single_database notify
fi
[ -n "${RUN[scaleout]:-}" ] && scaleout

for log_file in "$WORK"/bridge-*.log "$NGINX_DIR"/error-*.log "$NGINX_DIR"/scaleout-*/logs/error.log; do
	[ -f "$log_file" ] || continue
	lines=$(grep -c -E 'warn|error|crit|alert|emerg' "$log_file")
	[ "$lines" -eq 0 ] || problem "$(basename "$log_file"): $lines warnings or errors, e.g. $(grep -m 2 -E 'warn|error|crit|alert|emerg' "$log_file" | tr '\n' ' ')"
done

# ---- results ---------------------------------------------------------------------

PG_VERSION=$(sql_value "SELECT version()") || die "no server version"
COMET_VERSION=$(sql_value "SELECT extversion FROM pg_extension WHERE extname = 'comet'")
SETTINGS=$(sql_value "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')")
BRIDGE_VERSION=$(bridge/comet-bridge --version 2>&1 | head -n 1)
package_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
MHD_VERSION=$(package_version libmicrohttpd12)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
NCHAN_VERSION=$(package_version libnginx-mod-nchan)
GNUPLOT_VERSION=$(gnuplot --version 2>/dev/null)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GCC_VERSION=$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)
LOAD_END=$(cut -d ' ' -f 1-3 /proc/loadavg)
# pressure_some RESOURCE: the share of the last 5 minutes in which some
# task waited for RESOURCE (Linux PSI), or nothing without PSI.
pressure_some() {
	awk '$1 == "some" { sub("avg300=", "", $4); print $4 "%" }' "/proc/pressure/$1" 2>/dev/null
}
PRESSURE=""
[ -r /proc/pressure/cpu ] && PRESSURE="; in the last 5 minutes some task waited for CPU $(pressure_some cpu) and for I/O $(pressure_some io) of the time (PSI)"

# compare NAME COMET NCHAN BETTER: one row of the side-by-side table.
compare() {
	echo "| $1 | ${2:--} | ${3:--} | $(ratio "$2" "$3") | $4 |"
}

# verdict VALUE LIMIT [higher]: "met" when VALUE < LIMIT (or, with higher,
# VALUE >= LIMIT), else "missed".
verdict() {
	awk -v v="$1" -v l="$2" -v h="${3:-}" 'BEGIN {
		if (v == "" || v == "-") print "-";
		else if (h == "" ? v + 0 < l + 0 : v + 0 >= l + 0) print "met"; else print "missed" }'
}

# results_table: latest.md: the header, comet and Nchan side by side, the
# scale-out, the checks; only what ran in a partial run.
results_table() {
	echo "# comet and Nchan side by side"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $CORES cores${CPU_MODEL:+ ($CPU_MODEL)}, $(uname -sr); open files: $FILES"
	echo "- comet: $BRIDGE_VERSION (libmicrohttpd $MHD_VERSION), comet extension $COMET_VERSION;" \
		"PostgreSQL: $PG_VERSION; $SETTINGS"
	echo "- Nchan: nginx $NGINX_VERSION (nginx-light), libnginx-mod-nchan $NCHAN_VERSION; one worker process," \
		"long-poll subscribers, publishing by HTTP POST (configuration in bench/bridge/README.md)"
	echo "- load generator and publisher: bench/bridge/loadgen.c and publish.c (gcc $GCC_VERSION -O2)," \
		"on the same machine as the servers and PostgreSQL; charts: $GNUPLOT_VERSION"
	echo "- every message: $MESSAGE_SIZE bytes of JSON carrying its send time; a fresh server for every figure"
	echo "- machine load (other users' work shares the machine): load averages $LOAD_START at the start," \
		"$LOAD_END at the end$PRESSURE"
	[ -z "$FILES_NOTE" ] || echo "- **$FILES_NOTE**"
	[ -z "$PARTIAL" ] || echo "- **a partial run: only $PARTIAL (BENCH_ONLY, BENCH_SCALEOUT)**"
	echo
	[ -n "${RUN[fanout]:-}${RUN[sustained]:-}${RUN[single]:-}" ] && results_comparison
	[ -n "${RUN[scaleout]:-}" ] && scaleout_table
	if [ ${#PROBLEMS[@]} -eq 0 ]; then
		echo "Checks: every session was set up; in the fan-out, scale-out and one-subscriber runs every session" \
			"received every message once and in order, and in the sustained runs no session saw a message missing," \
			"repeated or out of order (comet: seqs from the set-up's positions; both: the number each message" \
			"carries; messages still on their way when the last step was cut off are counted only in its" \
			"delivered share); no HTTP errors; the servers ran without warnings and stopped cleanly each time."
	else
		echo "Problems seen:"
		printf -- '- %s\n' "${PROBLEMS[@]}"
	fi
}

# results_comparison: comet and Nchan side by side, the tables of the
# fan-out, sustained and single scenarios.
results_comparison() {
	local n rate what kind v
	echo "| figure | comet | Nchan | comet/Nchan | better |"
	echo "|---|---:|---:|---:|---|"
	for n in $SIZES; do
		compare "idle, $(thousands "$n") sessions: RSS per session, KiB" \
			"${R[idle,comet,$n]:-}" "${R[idle,nchan,$n]:-}" lower
	done
	for n in $SIZES; do
		compare "fan-out to $(thousands "$n"): latency p50, ms" \
			"$(ms "${R[p50,comet,$n]:-}")" "$(ms "${R[p50,nchan,$n]:-}")" lower
		compare "fan-out to $(thousands "$n"): latency p99, ms" \
			"$(ms "${R[p99,comet,$n]:-}")" "$(ms "${R[p99,nchan,$n]:-}")" lower
		compare "fan-out to $(thousands "$n"): latency max, ms" \
			"$(ms "${R[max,comet,$n]:-}")" "$(ms "${R[max,nchan,$n]:-}")" lower
		compare "fan-out to $(thousands "$n"): time until all have a message, median of $FANOUT_MESSAGES, ms" \
			"$(ms "${R[all,comet,$n]:-}")" "$(ms "${R[all,nchan,$n]:-}")" lower
		compare "fan-out to $(thousands "$n"): time until all have a message, worst of $FANOUT_MESSAGES, ms" \
			"$(ms "${R[all_max,comet,$n]:-}")" "$(ms "${R[all_max,nchan,$n]:-}")" lower
		compare "fan-out to $(thousands "$n"): delivery rate, messages/s" \
			"${R[rate,comet,$n]:-}" "${R[rate,nchan,$n]:-}" higher
		compare "fan-out to $(thousands "$n"): server CPU per delivery, µs" \
			"${R[server_cpu,comet,$n]:-}" "${R[server_cpu,nchan,$n]:-}" lower
	done
	compare "sustained, $(thousands "$SUSTAINED_SESSIONS") sessions over $SUSTAINED_CHANNELS channels: highest rate held (p99 < $P99_LIMIT_MS ms), messages/s" \
		"${R[held_rate,comet]:-}" "${R[held_rate,nchan]:-}" higher
	compare "one subscriber, call start to receipt p50, ms (comet.send)" \
		"$(ms "${R[start_p50,comet]:-}")" "$(ms "${R[start_p50,nchan]:-}")" lower
	compare "one subscriber, call start to receipt p99, ms (comet.send)" \
		"$(ms "${R[start_p99,comet]:-}")" "$(ms "${R[start_p99,nchan]:-}")" lower
	compare "one subscriber, call return to receipt p50, ms (comet.send)" \
		"$(ms "${R[return_p50,comet]:-}")" "$(ms "${R[return_p50,nchan]:-}")" lower
	compare "one subscriber, call return to receipt p99, ms (comet.send)" \
		"$(ms "${R[return_p99,comet]:-}")" "$(ms "${R[return_p99,nchan]:-}")" lower
	compare "one subscriber, call start to receipt p50, ms (pg_notify)" \
		"$(ms "${R[start_p50,notify]:-}")" "$(ms "${R[start_p50,nchan]:-}")" lower
	compare "one subscriber, call start to receipt p99, ms (pg_notify)" \
		"$(ms "${R[start_p99,notify]:-}")" "$(ms "${R[start_p99,nchan]:-}")" lower
	compare "one subscriber, call return to receipt p50, ms (pg_notify)" \
		"$(ms "${R[return_p50,notify]:-}")" "$(ms "${R[return_p50,nchan]:-}")" lower
	echo
	echo "A ratio below 1 is better for comet where lower is better, above 1 where higher is better." \
		"Latencies run from the send time a message carries (the publisher's clock when it started the call:" \
		"\`comet.send\` or \`pg_notify\` committed through libpq, or the POST to Nchan) to the load generator's" \
		"read of the answer that carried it; \"call return\" is from the end of that call instead (the commit" \
		"acknowledged, the POST answered), and can be negative when the message arrives first." \
		"Fan-out figures pool the $FANOUT_MESSAGES messages (N × $FANOUT_MESSAGES latencies); each is sent once" \
		"every session has the previous one and 0.5 s have passed; the delivery rate is N divided by the" \
		"median time until all have a message. The one-subscriber runs send $SINGLE_MESSAGES messages," \
		"$SINGLE_INTERVAL_MS ms after the previous call returned."
	echo
	echo "## Against the brief's targets"
	echo
	echo "| target | comet | verdict |"
	echo "|---|---:|---|"
	echo "| RSS per idle session at $(thousands "$LARGEST") < 10 KiB | ${R[idle,comet,$LARGEST]:--} KiB | $(verdict "${R[idle,comet,$LARGEST]:-}" 10) |"
	echo "| fan-out to $(thousands "$LARGEST") p99 < 100 ms | $(ms "${R[p99,comet,$LARGEST]:-}") ms | $(verdict "$(ms "${R[p99,comet,$LARGEST]:-}")" 100) |"
	echo "| one subscriber, commit to receipt p50 < 1 ms: comet.send, from the call's start (its WAL flush included) | $(ms "${R[start_p50,comet]:-}") ms | $(verdict "$(ms "${R[start_p50,comet]:-}")" 1) |"
	echo "| the same, from the commit's acknowledgement (the call's return) | $(ms "${R[return_p50,comet]:-}") ms | $(verdict "$(ms "${R[return_p50,comet]:-}")" 1) |"
	for n in $SIZES; do
		echo "| fan-out delivery rate to $(thousands "$n") ≥ Nchan's | $(ratio "${R[rate,comet,$n]:-}" "${R[rate,nchan,$n]:-}") × Nchan | $(verdict "$(ratio "${R[rate,comet,$n]:-}" "${R[rate,nchan,$n]:-}")" 1 higher) |"
	done
	echo "| sustained rate held ≥ Nchan's | $(ratio "${R[held_rate,comet]:-}" "${R[held_rate,nchan]:-}") × Nchan | $(verdict "$(ratio "${R[held_rate,comet]:-}" "${R[held_rate,nchan]:-}")" 1 higher) |"
	echo
	echo "## Idle sessions and fan-out, details"
	echo
	echo "| figure | server |$(for n in $SIZES; do printf ' %s sessions |' "$(thousands "$n")"; done)"
	echo "|---|---|$(for _ in $SIZES; do printf -- '---:|'; done)"
	for what in "sessions established:established" "polls held, as the server counts them:held" \
		"RSS before the sessions, KiB:rss_before" "RSS with the sessions idle, KiB:rss_after" \
		"first session reached, median over the messages, ms:first" \
		"time until all have each message, ms:alls" \
		"server CPU per delivery, µs:server_cpu" "load generator CPU per delivery, µs:loadgen_cpu"; do
		for kind in $SERVERS; do
			printf '| %s | %s |' "${what%:*}" "$kind"
			for n in $SIZES; do
				v=${R[${what#*:},$kind,$n]:-}
				[ "${what#*:}" = first ] && v=$(ms "$v")
				printf ' %s |' "${v:--}"
			done
			echo
		done
	done
	echo
	echo "RSS is VmRSS: the bridge's process; for Nchan nginx's master and worker together." \
		"CPU per delivery is the CPU time (user and system) the process used from just before the first message to" \
		"just after everyone had the last (the load generator's: as it reports it when everyone has the last)," \
		"divided by the deliveries: for the server, answering a held poll and" \
		"taking the session's next one; for the load generator, reading the answer and sending the next poll." \
		"The load generator is one process on one core: its CPU per delivery × N is a floor under the time until all" \
		"have a message, whatever the server."
	echo
	echo "## Sustained load, step by step"
	echo
	echo "$(thousands "$SUSTAINED_SESSIONS") sessions, $((SUSTAINED_SESSIONS / SUSTAINED_CHANNELS)) on each of" \
		"$SUSTAINED_CHANNELS channels; each step publishes at the offered rate for $STEP_SECONDS s, round-robin" \
		"over the channels, from $PUBLISH_CONNECTIONS connections (libpq for comet, keep-alive HTTP for Nchan);" \
		"a step holds when every subscriber has every message within $DRAIN_SECONDS s of the last one and p99 is under" \
		"$P99_LIMIT_MS ms. Delivered is messages per second as the subscribers saw them (deliveries ÷" \
		"$((SUSTAINED_SESSIONS / SUSTAINED_CHANNELS)), over the time from the first message's send time to the last receipt);" \
		"the publisher column is the rate its calls completed at. A message's send time is when it was due," \
		"so a publisher held up by a slow server shows in the latency. \"PostgreSQL alone\" is comet.send" \
		"committed the same way and heard on a LISTEN connection in the publisher, with no bridge, at every" \
		"rate comet's run reached (it does not stop at a step that does not hold)."
	echo
	echo "| offered, msg/s | comet delivered | comet p99, ms | comet held | comet publisher | Nchan delivered | Nchan p99, ms | Nchan held | Nchan publisher | PostgreSQL alone: committed | PostgreSQL alone: p99, ms | PostgreSQL alone: held |"
	echo "|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---|"
	for rate in $RATES; do
		[ -n "${S[ran,comet,$rate]:-}${S[ran,nchan,$rate]:-}${S[ran,database,$rate]:-}" ] || continue
		echo "| $rate | ${S[delivered,comet,$rate]:--} | $(ms "${S[p99,comet,$rate]:-}") | ${S[held,comet,$rate]:--}" \
			"| ${S[publisher,comet,$rate]:--} | ${S[delivered,nchan,$rate]:--} | $(ms "${S[p99,nchan,$rate]:-}")" \
			"| ${S[held,nchan,$rate]:--} | ${S[publisher,nchan,$rate]:--} | ${S[publisher,database,$rate]:--}" \
			"| $(ms "${S[p99,database,$rate]:-}") | ${S[held,database,$rate]:--} |"
	done
	echo
	echo "Highest rate held: comet ${R[held_rate,comet]:-0}, Nchan ${R[held_rate,nchan]:-0}," \
		"PostgreSQL alone ${R[held_rate,database]:-0} messages/s (0: not even the first step). comet's and" \
		"Nchan's rates stop rising after $STEPS_FAILED_MAX steps in a row that do not hold."
	echo
	echo "CPU use during each step (from the publisher's start to the report, including the ${DRAIN_SECONDS} s drain)," \
		"in % of one core; the machine has $CORES. PostgreSQL is the postmaster and all its processes."
	echo
	echo "| offered, msg/s | comet: bridge | comet: PostgreSQL | comet: publisher | comet: load generator | Nchan: nginx | Nchan: publisher | Nchan: load generator | PostgreSQL alone: PostgreSQL | PostgreSQL alone: publisher |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for rate in $RATES; do
		[ -n "${S[ran,comet,$rate]:-}${S[ran,nchan,$rate]:-}${S[ran,database,$rate]:-}" ] || continue
		echo "| $rate | ${S[cpu_server,comet,$rate]:--} | ${S[cpu_database,comet,$rate]:--}" \
			"| ${S[cpu_publisher,comet,$rate]:--} | ${S[cpu_loadgen,comet,$rate]:--}" \
			"| ${S[cpu_server,nchan,$rate]:--} | ${S[cpu_publisher,nchan,$rate]:--} | ${S[cpu_loadgen,nchan,$rate]:--}" \
			"| ${S[cpu_database,database,$rate]:--} | ${S[cpu_publisher,database,$rate]:--} |"
	done
	echo
	echo "## What bounds comet: PostgreSQL alone"
	echo
	echo "One subscriber's path without the bridge: the same publisher commits \`comet.send\` (or \`pg_notify\`)" \
		"and hears it on its own LISTEN connection, as the bridge's LISTEN connection would."
	echo
	echo "| one message at a time | call start to receipt p50, ms | p99, ms | call return to receipt p50, ms | call p50, ms |"
	echo "|---|---:|---:|---:|---:|"
	for what in comet notify nchan database-comet database-notify; do
		case $what in
		comet) name="comet.send → bridge → load generator" ;;
		notify) name="pg_notify → bridge → load generator" ;;
		nchan) name="POST → Nchan → load generator" ;;
		database-comet) name="comet.send → LISTEN connection (no bridge)" ;;
		database-notify) name="pg_notify → LISTEN connection (no bridge)" ;;
		esac
		echo "| $name | $(ms "${R[start_p50,$what]:-}") | $(ms "${R[start_p99,$what]:-}") | $(ms "${R[return_p50,$what]:-}") | $(ms "${R[call_p50,$what]:-}") |"
	done
	echo
	echo "Charts: [fan-out latency](fanout-latency.png), [one subscriber](single-latency.png)," \
		"[sustained load](sustained.png)."
	echo
}

# ---- charts ----------------------------------------------------------------------

# cdf FILE: "latency_ms fraction" lines of the latencies (µs) in FILE,
# at most about 1,000 points.
cdf() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		step = NR > 1000 ? int(NR / 1000) : 1
		for (i = 1; i <= NR; i += step) print v[i] / 1000, i / NR
		if (NR) print v[NR] / 1000, 1 }'
}

# charts: the PNGs, with gnuplot.
charts() {
	local kind what n=$LARGEST
	for kind in $SERVERS; do
		[ -f "$WORK/samples-fanout-$kind-$n.txt" ] || continue
		awk '{ print $NF - $(NF - 1) }' "$WORK/samples-fanout-$kind-$n.txt" >"$WORK/fanout-$kind.lat"
		cdf "$WORK/fanout-$kind.lat" >"$WORK/fanout-$kind.cdf"
	done
	for what in comet notify nchan database-comet; do
		[ -f "$WORK/latency-$what.txt" ] && cdf "$WORK/latency-$what.txt" >"$WORK/single-$what.cdf"
	done
	for kind in comet nchan database; do
		: >"$WORK/sustained-$kind.dat"
		for rate in $RATES; do
			[ -n "${S[ran,$kind,$rate]:-}" ] || continue
			echo "$rate ${S[delivered,$kind,$rate]:-0} $(ms "${S[p99,$kind,$rate]:-}")" >>"$WORK/sustained-$kind.dat"
		done
	done
	gnuplot <<GNUPLOT || problem "gnuplot failed"
set terminal pngcairo size 800,480 font ",10" noenhanced
set grid
set key bottom right
comet = "#1b7837"
nchan = "#2166ac"
notify = "#8073ac"
database = "#e08214"

set output "$RESULTS_DIR/fanout-latency.png"
set title "Fan-out of one message to $(thousands "$n") long-poll sessions ($FANOUT_MESSAGES messages pooled)"
set xlabel "latency from the publisher's call to receipt, ms"
set ylabel "fraction of deliveries"
set yrange [0:1]
plot "$WORK/fanout-comet.cdf" using 1:2 with lines lw 2 lc rgb comet title "comet", \
     "$WORK/fanout-nchan.cdf" using 1:2 with lines lw 2 lc rgb nchan title "Nchan"

set output "$RESULTS_DIR/single-latency.png"
set title "One subscriber: $SINGLE_MESSAGES messages, one at a time"
set xlabel "latency from the publisher's call to receipt, ms (log scale)"
set ylabel "fraction of messages"
set logscale x
plot "$WORK/single-comet.cdf" using 1:2 with lines lw 2 lc rgb comet title "comet.send via comet-bridge", \
     "$WORK/single-notify.cdf" using 1:2 with lines lw 2 lc rgb notify title "pg_notify via comet-bridge", \
     "$WORK/single-nchan.cdf" using 1:2 with lines lw 2 lc rgb nchan title "POST via Nchan", \
     "$WORK/single-database-comet.cdf" using 1:2 with lines lw 2 dt 2 lc rgb database \
         title "comet.send to a LISTEN connection, no bridge"
unset logscale x

set output "$RESULTS_DIR/sustained.png"
set multiplot layout 1,2 title "Sustained: $(thousands "$SUSTAINED_SESSIONS") sessions over $SUSTAINED_CHANNELS channels, $STEP_SECONDS s per step"
set logscale xy
set key bottom right
set xlabel "offered, messages/s"
set ylabel "delivered, messages/s"
set yrange [*:*]
set title "delivered rate"
plot x with lines dt 3 lc "gray" title "offered", \
     "$WORK/sustained-comet.dat" using 1:2 with linespoints lw 2 lc rgb comet title "comet", \
     "$WORK/sustained-nchan.dat" using 1:2 with linespoints lw 2 lc rgb nchan title "Nchan", \
     "$WORK/sustained-database.dat" using 1:2 with linespoints lw 2 dt 2 lc rgb database \
         title "PostgreSQL alone (committed)"
set title "p99 latency"
set ylabel "p99, ms"
set key top left
plot $P99_LIMIT_MS with lines dt 3 lc "gray" title "$P99_LIMIT_MS ms", \
     "$WORK/sustained-comet.dat" using 1:3 with linespoints lw 2 lc rgb comet title "comet", \
     "$WORK/sustained-nchan.dat" using 1:3 with linespoints lw 2 lc rgb nchan title "Nchan", \
     "$WORK/sustained-database.dat" using 1:3 with linespoints lw 2 dt 2 lc rgb database \
         title "PostgreSQL alone"
unset multiplot
GNUPLOT
}

mkdir -p "$(dirname "$RESULTS")"
[ -z "$PARTIAL" ] && charts
results_table >"$RESULTS" || die "could not write $RESULTS"
echo
cat "$RESULTS"
echo
if [ -z "$PARTIAL" ]; then
	log "written to ${RESULTS#"$COMET_ROOT"/} and bench/results/*.png"
else
	log "a partial run (only $PARTIAL): written to ${RESULTS#"$COMET_ROOT"/}; bench/results/latest.md and the charts are unchanged"
fi
