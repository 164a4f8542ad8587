#!/bin/bash
# run.sh — `make run`: on Debian 12 as root, install what is missing, build
# and install the extension and the bridge, start comet's private PostgreSQL
# cluster under .run/ (never the system one) with the extension created in
# the database "comet", load the Grid-o-Matic demo (examples/grid-o-matic)
# into it, and start comet-bridge on http://127.0.0.1:8080 serving the demo
# with the demo's SQL functions plugged in.  Both keep running; `make stop`
# stops them.  Running it again rebuilds, reloads the demo (a fresh fight)
# and restarts the bridge.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$COMET_ROOT"

RUN_DIR=$COMET_ROOT/.run
DEMO_DIR=$COMET_ROOT/examples/grid-o-matic

# bridge_stop: SIGTERM the bridge make run started, if it runs.
bridge_stop() {
	pid_stop "$RUN_DIR/bridge.pid" bridge
}

if [ "${1:-}" = stop ]; then
	bridge_stop
	if [ -e "$RUN_DIR/pg" ]; then
		cluster_stop "$(readlink -f "$RUN_DIR/pg")"
	fi
	log "stopped"
	exit 0
fi

deps_install $COMET_PACKAGES_BUILD
build_install

# the cluster, the database "comet" and "demo" open to pages that have not
# logged in (grid.authorize leaves channels other than grid:* to comet's
# grants)
run_database "$RUN_DIR"

# stop the bridge before the demo's functions are replaced under it; the
# restart also makes a new build take effect
bridge_stop
log "loading the Grid-o-Matic demo"
psql -X -q -v ON_ERROR_STOP=1 -d comet -f "$DEMO_DIR/sql/grid.sql" >/dev/null

nohup "$COMET_ROOT/bridge/comet-bridge" --listen 127.0.0.1:8080 \
	--db "host=$PGHOST port=$PGPORT user=postgres dbname=comet" \
	--static "$DEMO_DIR/www" --client "$COMET_ROOT/client/comet.js" \
	--auth-function grid.authenticate --authorize-function grid.authorize \
	--receive-function grid.receive --session-function grid.presence \
	>"$RUN_DIR/bridge.log" 2>&1 </dev/null &
echo $! >"$RUN_DIR/bridge.pid"
for _ in $(seq 100); do
	grep -q "listening on" "$RUN_DIR/bridge.log" 2>/dev/null && break
	kill -0 "$(cat "$RUN_DIR/bridge.pid")" 2>/dev/null || break
	sleep 0.1
done
grep -q "listening on" "$RUN_DIR/bridge.log" || { cat "$RUN_DIR/bridge.log" >&2; die "the bridge did not start"; }

PSQL="psql -h $PGHOST -p $PGPORT -U postgres comet"
cat <<INFO

comet is running: PostgreSQL 15 with the comet extension (database "comet")
and comet-bridge serving Grid-o-Matic, a combat grid shared live between
players (open it in two browsers, or a normal and a private window).

  open:     http://127.0.0.1:8080/
  log in:   alice / wonderland    (player: Aria and Pip)
            bob   / builder       (player: Borin)
            gm    / dungeon       (game master: moves everything)
  move:     $PSQL -c "UPDATE grid.pieces SET x = 6, y = 4 WHERE glyph = 'GB'"
  chat:     $PSQL -c "INSERT INTO grid.chat (grid_id, kind, text) VALUES (1, 'system', 'A drum booms 🥁')"
  connect:  $PSQL
  logs:     .run/bridge.log
  stop:     make stop

INFO
