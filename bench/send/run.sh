#!/bin/bash
# run.sh — `make bench`: how much durable, numbered sending costs.
#
# Installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL cluster (private directory under /tmp, own port and
# socket directory, default durability: fsync and synchronous_commit on) and
# measures with pgbench the transactions per second of four ways to send one
# packet per transaction:
#
#   (a) pg_notify alone                        no storage, no seq
#   (b) INSERT into a copy of comet.packets    the hand-written equivalent,
#       plus pg_notify, in one statement       seq from a sequence (gaps)
#   (c) comet.send                             gap-free per-channel seq
#   (d) a plcomet function                     (c) plus template rendering
#
# each with 1 and 8 clients, on one channel and on 100.  Prints a Markdown
# table with the ratios c/b and d/c and writes it to bench/results/send.md.
# BENCH_SECONDS (default 10) is the length of each of the 16 runs.  The
# cluster keeps synchronous_commit on: comet forces its commits to be
# synchronous anyway (a seq listeners have seen must survive a crash), so
# an asynchronous-commit comparison would only measure that.  Only the
# loopback interface and a unix socket are used; the cluster is stopped and
# removed on exit, also on failure or interrupt.
set -uo pipefail
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$COMET_ROOT" || exit 1

BENCH_SECONDS=${BENCH_SECONDS:-10}
[[ $BENCH_SECONDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds, not '$BENCH_SECONDS'"

PGBENCH=$PG_BIN/pgbench
PSQL=$PG_BIN/psql
BENCH_DB=comet_bench
RESULTS=$COMET_ROOT/bench/results/send.md
# what a game server would send when a token moves; (d) renders the same
PAYLOAD='{"type":"move","token":"orc","x":3,"y":4}'
METHODS="notify insert_notify send plcomet"
CHANNEL_COUNTS="1 100"
CLIENT_COUNTS="1 8"
CORES=$(nproc)

# shellcheck disable=SC2086  # a list of package names
deps_install $COMET_PACKAGES_BUILD || exit 1
build_install || die "build failed"
[ -x "$PGBENCH" ] || die "$PGBENCH is missing (it comes with postgresql-15)"

WORK=$(mktemp -d /tmp/comet-bench.XXXXXX)
cleanup() {
	cluster_stop "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_init "$WORK"
# no settings: a benchmark keeps fsync, synchronous_commit and
# full_page_writes as a production server has them
cluster_start "$WORK"

# sql: run SQL from stdin in the benchmark database, one statement at a
# time (so VACUUM works), stopping at the first error.
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
sql <<'SQL' || die "could not set up the database"
CREATE EXTENSION comet;

-- (b) stores into a table shaped and indexed like comet.packets
CREATE TABLE bench_packets (
    channel  text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    data     jsonb NOT NULL,
    sent_at  timestamptz NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE INDEX bench_packets_sent_at_idx ON bench_packets USING brin (sent_at);
CREATE SEQUENCE bench_seq;

-- (d): "$x" renders an int as a JSON number, so the packet equals PAYLOAD
CREATE FUNCTION bench_move(grid int, token text, x int, y int) RETURNS void
LANGUAGE plcomet AS $$
{"channel": "grid:${grid}",
 "data": {"type": "move", "token": "$token", "x": "$x", "y": "$y"}}
$$;
SQL

# The pgbench scripts.  :channels and :payload come from -D; with
# -M prepared they travel as parameters, so every transaction parses its
# payload as an application's would.
mkdir -p "$WORK/scripts"
cat >"$WORK/scripts/notify.sql" <<'SQL'
\set ch random(1, :channels)
SELECT pg_notify('grid:' || :ch, :payload);
SQL
# one statement, so that (b) makes as many round trips as (c); the NOTIFY
# payload has the same form as comet's: "comet/1 <seq> <json>"
cat >"$WORK/scripts/insert_notify.sql" <<'SQL'
\set ch random(1, :channels)
WITH stored AS (
    INSERT INTO bench_packets (channel, seq, data, sent_at)
    VALUES ('grid:' || :ch, nextval('bench_seq'), :payload::jsonb, now())
    RETURNING channel, seq, data)
SELECT pg_notify(channel, 'comet/1 ' || seq || ' ' || data::text) FROM stored;
SQL
cat >"$WORK/scripts/send.sql" <<'SQL'
\set ch random(1, :channels)
SELECT comet.send('grid:' || :ch, :payload::jsonb);
SQL
cat >"$WORK/scripts/plcomet.sql" <<'SQL'
\set ch random(1, :channels)
SELECT bench_move(:ch, 'orc', 3, 4);
SQL

# bench_reset: empty both tables and checkpoint, so that every run starts
# from the same sizes and no checkpoint from an earlier run lands in it.
bench_reset() {
	sql >/dev/null <<'SQL'
SELECT comet.prune('0');
TRUNCATE bench_packets;
VACUUM ANALYZE comet.packets, comet.channels, bench_packets;
CHECKPOINT;
SQL
}

# bench_check METHOD TRANSACTIONS: warn (and remember) when the rows a run
# stored do not match its committed transactions, or a channel's seqs have
# gaps.  pg_notify alone stores nothing and is not checked.
CHECK_PROBLEMS=()
bench_check() {
	local method=$1 transactions=$2 table rows gappy
	case $method in
	notify) return 0 ;;
	insert_notify) table=bench_packets ;;
	*) table=comet.packets ;;
	esac
	rows=$(sql_value "SELECT count(*) FROM $table") || die "could not count $table"
	if [ "$rows" != "$transactions" ]; then
		CHECK_PROBLEMS+=("$method: $transactions transactions but $rows rows in $table")
		log "warning: ${CHECK_PROBLEMS[-1]}"
	fi
	[ "$table" = comet.packets ] || return 0
	gappy=$(sql_value "SELECT count(*) FROM (SELECT channel FROM comet.packets
		GROUP BY channel HAVING max(seq) - min(seq) + 1 <> count(*)) g") \
		|| die "could not check seqs"
	if [ "$gappy" != 0 ]; then
		CHECK_PROBLEMS+=("$method: $gappy channels with gaps in their seqs")
		log "warning: ${CHECK_PROBLEMS[-1]}"
	fi
}

# bench_run METHOD CHANNELS CLIENTS SECONDS: run one pgbench measurement and
# set BENCH_TPS to its TPS (excluding connection time).  Dies when pgbench
# fails or any transaction failed.  (Not for $(...): checks are remembered.)
bench_run() {
	local method=$1 channels=$2 clients=$3 seconds=$4 threads out tps committed failed
	threads=$((clients < CORES ? clients : CORES))
	out=$WORK/pgbench-$method-$channels-$clients.out
	bench_reset || die "could not reset the tables"
	"$PGBENCH" -n -M prepared -T "$seconds" -c "$clients" -j "$threads" \
		-D channels="$channels" -D payload="$PAYLOAD" \
		-f "$WORK/scripts/$method.sql" "$BENCH_DB" >"$out" 2>&1 \
		|| { cat "$out" >&2; die "pgbench failed: $method, $channels channels, $clients clients"; }
	tps=$(awk '/^tps = / { print $3; exit }' "$out")
	committed=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$out")
	failed=$(awk '/^number of failed transactions/ { print $5; exit }' "$out")
	if [ -z "$tps" ] || [ -z "$committed" ]; then
		cat "$out" >&2
		die "no result in pgbench's output"
	fi
	[ "${failed:-0}" = 0 ] || { cat "$out" >&2; die "$failed transactions failed: $method"; }
	bench_check "$method" "$committed"
	BENCH_TPS=$tps
}

# ratio A B: A/B with two decimals, "-" when B is zero.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# ratio_cell A B TARGET: the ratio, flagged when it misses its target.
ratio_cell() {
	local r
	r=$(ratio "$1" "$2")
	if [ "$r" != "-" ] && awk -v r="$r" -v t="$3" 'BEGIN { exit !(r < t) }'; then
		echo "$r (below)"
	else
		echo "$r"
	fi
}

PG_VERSION=$(sql_value "SELECT version()") || die "no server version"
SETTINGS=$(sql_value "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes',
	'wal_sync_method', 'shared_buffers', 'max_wal_size')") || die "no settings"
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

log "warming up (1 s per method, not reported)"
for method in $METHODS; do
	bench_run "$method" 100 1 1
done
CHECK_PROBLEMS=()

declare -A TPS
for channels in $CHANNEL_COUNTS; do
	for clients in $CLIENT_COUNTS; do
		for method in $METHODS; do
			log "$channels channel(s) x $clients client(s): $method (${BENCH_SECONDS} s)"
			bench_run "$method" "$channels" "$clients" "$BENCH_SECONDS"
			TPS[$method,$channels,$clients]=$BENCH_TPS
			log "  $(printf '%.0f' "${TPS[$method,$channels,$clients]}") tps"
		done
	done
done

# bench_table: the results as Markdown.
bench_table() {
	local channels clients a b c d
	echo "# comet send benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $CORES cores${CPU_MODEL:+ ($CPU_MODEL)}, $(uname -sr)"
	echo "- PostgreSQL: $PG_VERSION"
	echo "- settings: $SETTINGS"
	echo "- each cell: one pgbench run of $BENCH_SECONDS s, -M prepared, -j min(clients, cores);" \
		"transactions per second without connection time"
	echo "- payload: \`$PAYLOAD\`"
	echo
	echo "| channels × clients | (a) pg_notify | (b) insert + pg_notify | (c) comet.send | (d) plcomet | c/b (≥ 0.7) | d/c (≥ 0.9) |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for channels in $CHANNEL_COUNTS; do
		for clients in $CLIENT_COUNTS; do
			a=${TPS[notify,$channels,$clients]}
			b=${TPS[insert_notify,$channels,$clients]}
			c=${TPS[send,$channels,$clients]}
			d=${TPS[plcomet,$channels,$clients]}
			printf '| %s × %s | %.0f | %.0f | %.0f | %.0f | %s | %s |\n' \
				"$channels" "$clients" "$a" "$b" "$c" "$d" \
				"$(ratio_cell "$c" "$b" 0.7)" "$(ratio_cell "$d" "$c" 0.9)"
		done
	done
	echo
	echo "(a) \`SELECT pg_notify(channel, payload)\`;" \
		"(b) one statement inserting into a table like comet.packets (seq from a sequence) and calling pg_notify;" \
		"(c) \`SELECT comet.send(channel, payload::jsonb)\`;" \
		"(d) \`SELECT bench_move(grid, 'orc', 3, 4)\`, a plcomet function sending the same packet." \
		"With 100 channels each transaction picks one at random."
	echo
	if [ ${#CHECK_PROBLEMS[@]} -eq 0 ]; then
		echo "Checks: every committed transaction of (b), (c) and (d) left exactly one row; no channel's seqs have gaps."
	else
		echo "Checks failed:"
		printf -- '- %s\n' "${CHECK_PROBLEMS[@]}"
	fi
}

mkdir -p "$(dirname "$RESULTS")"
bench_table >"$RESULTS" || die "could not write $RESULTS"
echo
cat "$RESULTS"
echo
log "written to ${RESULTS#"$COMET_ROOT"/}"
