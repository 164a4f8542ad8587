#!/bin/bash
# run.sh — `make bench`, part 2: comet-bridge under long-poll load.
#
# A throwaway cluster and one bridge on 127.0.0.1; bench/bridge/loadgen
# holds N sessions on one channel (N = 1,000 and 10,000) and reports:
#   idle:    the bridge's RSS per held session;
#   fan-out: one committed packet reaching all N, p50/p99/max;
#   single:  commit-to-receipt latency for one subscriber (200 packets),
#            for comet.send and for a plain pg_notify.
# Writes bench/results/bridge.md.  Loopback only; everything stops on exit.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$COMET_ROOT" || exit 1

deps_install $COMET_PACKAGES_BUILD || exit 1
build_install || die "build failed"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/comet-benchb.XXXXXX)
BRIDGE_PID=
cleanup() {
	[ -n "$BRIDGE_PID" ] && kill "$BRIDGE_PID" 2>/dev/null && wait "$BRIDGE_PID" 2>/dev/null
	cluster_stop "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -Wall -Wextra -Werror -o "$WORK/loadgen" bench/bridge/loadgen.c || die "loadgen does not build"
cluster_init "$WORK"
cluster_start "$WORK" max_connections=100
psql -X -q -d postgres -c "CREATE DATABASE bench" || die "no database"
psql -X -q -d bench -c "CREATE EXTENSION comet" -c "SELECT comet.grant('bench', ARRAY['subscribe'])" >/dev/null

PORT=$(free_port)
bridge/comet-bridge --listen "127.0.0.1:$PORT" --max-sessions 20000 --max-pending 100000 \
	--db "host=$PGHOST port=$PGPORT user=postgres dbname=bench" --log-level warn \
	>"$WORK/bridge.log" 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/bridge.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/bridge.log" || { cat "$WORK/bridge.log"; die "the bridge did not start"; }

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$BRIDGE_PID/status"; }
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
send_now() {
	psql -X -q -d bench -c "SELECT comet.send('bench', jsonb_build_object('t', (extract(epoch from clock_timestamp()) * 1e6)::bigint))" >/dev/null
}
value() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$2"; }

declare -A R
for N in 1000 10000; do
	log "$N sessions"
	base=$(rss_kib)
	"$WORK/loadgen" --port "$PORT" --sessions "$N" --channel bench --expect 5 --duration 90 \
		>"$WORK/fan-$N.out" 2>"$WORK/fan-$N.err" &
	LOADGEN=$!
	for _ in $(seq 600); do
		[ "$(metric comet_requests_pending)" = "$N" ] && break
		sleep 0.1
	done
	sleep 2
	held=$(metric comet_requests_pending)
	rss=$(rss_kib)
	R[idle,$N]=$(awk -v a="$rss" -v b="$base" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')
	R[held,$N]=$held
	for _ in 1 2 3 4 5; do
		send_now
		sleep 1
	done
	wait "$LOADGEN"
	R[p50,$N]=$(value p50_us "$WORK/fan-$N.out")
	R[p99,$N]=$(value p99_us "$WORK/fan-$N.out")
	R[max,$N]=$(value max_us "$WORK/fan-$N.out")
	R[packets,$N]=$(value packets "$WORK/fan-$N.out")
	R[errors,$N]=$(value errors "$WORK/fan-$N.out")
	sleep 1
done

# single subscriber: 200 packets, 20 ms apart, from one psql session
single() {
	local what=$1 sql
	"$WORK/loadgen" --port "$PORT" --sessions 1 --channel bench --expect 200 --duration 60 \
		>"$WORK/single-$what.out" 2>&1 &
	LOADGEN=$!
	sleep 1
	if [ "$what" = send ]; then
		sql="SELECT comet.send('bench', jsonb_build_object('t', (extract(epoch from clock_timestamp()) * 1e6)::bigint)); SELECT pg_sleep(0.02);"
	else
		sql="SELECT pg_notify('bench', json_build_object('t', (extract(epoch from clock_timestamp()) * 1e6)::bigint)::text); SELECT pg_sleep(0.02);"
	fi
	for _ in $(seq 200); do echo "$sql"; done | psql -X -q -d bench >/dev/null
	wait "$LOADGEN"
}
single send
single notify

ms() { awk -v us="$1" 'BEGIN { if (us == "") print "-"; else printf "%.2f", us / 1000 }'; }
{
	echo "# comet-bridge benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(uname -sr)"
	echo "- $(psql -X -At -d bench -c 'SELECT version()')"
	echo "- one bridge, one channel, loopback; loadgen: one process, one epoll loop, one keep-alive connection per session"
	echo
	echo "| figure | 1,000 sessions | 10,000 sessions | target |"
	echo "|---|---:|---:|---|"
	echo "| polls held | ${R[held,1000]} | ${R[held,10000]} | |"
	echo "| bridge RSS per idle session (KiB) | ${R[idle,1000]} | ${R[idle,10000]} | < 10 |"
	echo "| fan-out latency p50 (ms) | $(ms "${R[p50,1000]}") | $(ms "${R[p50,10000]}") | |"
	echo "| fan-out latency p99 (ms) | $(ms "${R[p99,1000]}") | $(ms "${R[p99,10000]}") | < 100 at 10,000 |"
	echo "| fan-out latency max (ms) | $(ms "${R[max,1000]}") | $(ms "${R[max,10000]}") | |"
	echo "| packets received (5 sent) | ${R[packets,1000]} | ${R[packets,10000]} | 5 × sessions |"
	echo "| client errors | ${R[errors,1000]} | ${R[errors,10000]} | 0 |"
	echo
	echo "| single subscriber, commit to receipt | p50 (ms) | p99 (ms) | target |"
	echo "|---|---:|---:|---|"
	echo "| comet.send (durable) | $(ms "$(value p50_us "$WORK/single-send.out")") | $(ms "$(value p99_us "$WORK/single-send.out")") | p50 < 1 |"
	echo "| pg_notify (plain) | $(ms "$(value p50_us "$WORK/single-notify.out")") | $(ms "$(value p99_us "$WORK/single-notify.out")") | |"
	echo
	echo "Latency is measured from clock_timestamp() inside the sending transaction (before its commit) to receipt, so it includes the commit itself."
} >bench/results/bridge.md
cat bench/results/bridge.md
