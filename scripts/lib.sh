# lib.sh — shared by scripts/test.sh, scripts/run.sh and bench/: installing
# what is missing, building, and private PostgreSQL clusters.
#
# PostgreSQL refuses to run as root, so as root the server runs as the
# unprivileged user "postgres" (created by Debian's package); otherwise as
# the calling user.  A cluster never touches the system one: it has its own
# data directory, port and socket directory.
# shellcheck shell=bash

COMET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages each command needs.
COMET_PACKAGES_BUILD="make gcc libc6-dev pkg-config postgresql-15 postgresql-server-dev-15
	postgresql-client-15 libpq-dev libmicrohttpd-dev libjson-c-dev perl"

# For the client and browser tests: a headless browser and fonts that draw
# accents, CJK and emoji (Node.js and npm: see node_install).
COMET_PACKAGES_BROWSER="chromium fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji"

# Install the packages that are missing (apt-get, as root).
deps_install() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
			|| missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root to install them)"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# node_install: Node.js (18 or later) and npm, from Debian unless the
# machine already has them (from Debian or elsewhere).
node_install() {
	local need=()
	command -v node >/dev/null 2>&1 || need+=(nodejs)
	command -v npm >/dev/null 2>&1 || need+=(npm)
	[ ${#need[@]} -eq 0 ] || deps_install "${need[@]}"
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$major" -ge 18 ] || die "Node.js 18 or later is needed (found $(node --version))"
}

# npm_ci DIR: install DIR's locked npm dependencies (package-lock.json)
# into DIR/node_modules unless they are there already.
npm_ci() {
	local dir=$1
	# npm writes node_modules/.package-lock.json on every install
	if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
		return 0
	fi
	log "installing npm packages in ${dir#"$COMET_ROOT"/}"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
		|| die "npm ci failed in $dir"
}

# Build and install the extension into PostgreSQL 15.
build_install() {
	log "building and installing the extension"
	make -s -C "$COMET_ROOT" >/dev/null
	make -s -C "$COMET_ROOT" install >/dev/null
}

# The user the server runs as.
pg_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Run a command as the server's user.
as_pg_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	local port tries=0
	while [ $tries -lt 200 ]; do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
		tries=$((tries + 1))
	done
	die "no free port found"
}

# cluster_init DIR: a new cluster in DIR/data, sockets in DIR.
cluster_init() {
	local dir=$1
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	as_pg_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
		|| { cat "$dir/initdb.log" >&2; die "initdb failed"; }
}

# cluster_start DIR [setting=value ...]: start on a free port; sets PGHOST,
# PGPORT, PGUSER for the caller.  Retries when another run took the port.
cluster_start() {
	local dir=$1 port attempt opts=""
	shift
	for setting in "$@"; do opts="$opts -c $setting"; done
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		if as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 $opts" start >/dev/null; then
			echo "$port" >"$dir/port"
			export PGHOST=$dir PGPORT=$port PGUSER=postgres
			return 0
		fi
		log "start on port $port failed (attempt $attempt)"
	done
	tail -n 30 "$dir/server.log" >&2 || true
	die "could not start PostgreSQL"
}

# cluster_stop DIR: stop the cluster if it runs.
cluster_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
		|| as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 \
		|| true
}

# Can the server's user reach and write DIR?  (a checkout under /root is
# not reachable by "postgres")
pg_user_can_use() {
	as_pg_user test -w "$1" -a -x "$1" 2>/dev/null
}

# run_pg_dir RUN_DIR: the PostgreSQL cluster directory of make run and make
# run-cluster: RUN_DIR/pg when the server's user can reach it there (a
# checkout under /root cannot be reached by "postgres"); otherwise a
# directory in /var/tmp, with RUN_DIR/pg pointing at it.
run_pg_dir() {
	local run_dir=$1 elsewhere
	mkdir -p "$run_dir"
	if [ -e "$run_dir/pg" ]; then
		echo "$run_dir/pg"
		return
	fi
	mkdir -p "$run_dir/pg"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$run_dir/pg"
	if pg_user_can_use "$run_dir/pg"; then
		echo "$run_dir/pg"
		return
	fi
	rmdir "$run_dir/pg"
	elsewhere=/var/tmp/comet-run.$(printf '%s' "$COMET_ROOT" | md5sum | cut -c1-12)
	mkdir -p "$elsewhere"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$elsewhere"
	ln -s "$elsewhere" "$run_dir/pg"
	echo "$run_dir/pg"
}

# pid_stop FILE WHAT: SIGTERM the process in pid file FILE, if it runs, and
# wait up to 5 s for it; then remove FILE.
pid_stop() {
	local file=$1 what=$2 pid
	[ -f "$file" ] || return 0
	pid=$(cat "$file")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		log "stopping $what (pid $pid)"
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && die "$what (pid $pid) did not stop"
	fi
	rm -f "$file"
}

# run_database RUN_DIR: the cluster of make run and make run-cluster
# (run_pg_dir) created and started if need be, with the database "comet",
# the extension up to date and "demo" open for subscribing (a page may
# listen there without logging in).  Sets PGDIR, PGHOST, PGPORT, PGUSER.
run_database() {
	PGDIR=$(readlink -f "$(run_pg_dir "$1")")
	if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
		log "creating the cluster in $PGDIR"
		cluster_init "$PGDIR"
	fi
	if as_pg_user "$PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
		PGPORT=$(cat "$PGDIR/port")
		export PGHOST=$PGDIR PGPORT PGUSER=postgres
		log "the cluster is already running"
	else
		cluster_start "$PGDIR"
	fi
	psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'comet'" | grep -q 1 \
		|| psql -X -q -d postgres -c "CREATE DATABASE comet"
	psql -X -q -d comet -c "SET client_min_messages = warning" \
		-c "CREATE EXTENSION IF NOT EXISTS comet" -c "ALTER EXTENSION comet UPDATE"
	psql -X -q -d comet -c "SELECT comet.grant('demo', ARRAY['subscribe'])" >/dev/null
}
