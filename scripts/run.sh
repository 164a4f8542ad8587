#!/bin/bash
# run.sh — `make run`: on Debian 12 as root, install what is missing, build
# and install the extension, and start comet's private PostgreSQL cluster
# under .run/ (never the system one) with the extension created in the
# database "comet".  The cluster keeps running; `make stop` stops it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$COMET_ROOT"

RUN_DIR=$COMET_ROOT/.run

# The cluster lives in .run/pg when the server's user can reach it there (a
# checkout under /root cannot be reached by "postgres"); otherwise in
# /var/tmp, with .run/pg pointing at it.
cluster_dir() {
	mkdir -p "$RUN_DIR"
	if [ -e "$RUN_DIR/pg" ]; then
		echo "$RUN_DIR/pg"
		return
	fi
	mkdir -p "$RUN_DIR/pg"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$RUN_DIR/pg"
	if pg_user_can_use "$RUN_DIR/pg"; then
		echo "$RUN_DIR/pg"
		return
	fi
	rmdir "$RUN_DIR/pg"
	local elsewhere
	elsewhere=/var/tmp/comet-run.$(printf '%s' "$COMET_ROOT" | md5sum | cut -c1-12)
	mkdir -p "$elsewhere"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$elsewhere"
	ln -s "$elsewhere" "$RUN_DIR/pg"
	echo "$RUN_DIR/pg"
}

if [ "${1:-}" = stop ]; then
	if [ -e "$RUN_DIR/pg" ]; then
		cluster_stop "$(readlink -f "$RUN_DIR/pg")"
		log "stopped"
	fi
	exit 0
fi

deps_install $COMET_PACKAGES_BUILD
build_install

PGDIR=$(readlink -f "$(cluster_dir)")
if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
	log "creating the cluster in $PGDIR"
	cluster_init "$PGDIR"
fi
if as_pg_user "$PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
	export PGHOST=$PGDIR PGPORT=$(cat "$PGDIR/port") PGUSER=postgres
	log "the cluster is already running"
else
	cluster_start "$PGDIR"
fi

psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'comet'" | grep -q 1 \
	|| psql -X -q -d postgres -c "CREATE DATABASE comet"
psql -X -q -d comet -c "SET client_min_messages = warning" \
	-c "CREATE EXTENSION IF NOT EXISTS comet" -c "ALTER EXTENSION comet UPDATE"

cat <<INFO

comet is running: PostgreSQL 15 with the comet extension, database "comet".

  connect:  psql -h $PGHOST -p $PGPORT -U postgres comet
  send:     psql -h $PGHOST -p $PGPORT -U postgres comet -c "SELECT comet.send('demo', '{\"hello\": \"world\"}')"
  see it:   psql -h $PGHOST -p $PGPORT -U postgres comet -c "SELECT * FROM comet.replay('demo')"
  stop:     make stop

INFO
