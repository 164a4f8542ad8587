#!/bin/bash
# run-cluster.sh — `make run-cluster`: what `make run` does (install what is
# missing, build and install, comet's private PostgreSQL cluster under .run/
# with the Grid-o-Matic demo loaded into database "comet"), but with three
# comet-bridges on 127.0.0.1:8081-8083 (node ids b1, b2, b3) and nginx on
# http://127.0.0.1:8080 in front of them, configured from examples/nginx/.
# Everything keeps running; `scripts/run-cluster.sh stop` (make
# stop-cluster) stops nginx, the bridges and the cluster.  Running it again
# rebuilds, reloads the demo and restarts the bridges and nginx.
# `scripts/run-cluster.sh bridge b2` (re)starts one bridge, e.g. after
# killing it to watch its browsers fall over to the others.
#
# It shares .run/pg with `make run` and stops make run's bridge, which also
# wants port 8080.  It never touches the system's PostgreSQL or nginx: nginx
# runs with its own prefix (.run/nginx), config, logs and pid file.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$COMET_ROOT"

RUN_DIR=$COMET_ROOT/.run
BRIDGE_DIR=$RUN_DIR/cluster
DEMO_DIR=$COMET_ROOT/examples/grid-o-matic
NGINX_PORT=8080
NODES=(b1 b2 b3)
PORTS=(8081 8082 8083)
NGINX_WORKER_USER=nobody

# nginx's prefix: .run/nginx, or (when nginx's workers could not reach it,
# as in a checkout under /root) a directory in /var/tmp that .run/nginx
# points at, so that a copy of the page's files there can be served.
nginx_prefix() {
	mkdir -p "$RUN_DIR"
	if [ ! -e "$RUN_DIR/nginx" ]; then
		mkdir -p "$RUN_DIR/nginx"
		if [ "$(id -u)" -eq 0 ] && ! runuser -u "$NGINX_WORKER_USER" -- test -x "$RUN_DIR/nginx"; then
			rmdir "$RUN_DIR/nginx"
			local elsewhere
			elsewhere=/var/tmp/comet-nginx.$(printf '%s' "$COMET_ROOT" | md5sum | cut -c1-12)
			mkdir -p "$elsewhere"
			chmod 755 "$elsewhere"
			ln -s "$elsewhere" "$RUN_DIR/nginx"
		fi
	fi
	readlink -f "$RUN_DIR/nginx"
}

# nginx_stop: stop the nginx this script started (SIGTERM: held polls are
# cut at once, their clients retry), if it runs.
nginx_stop() {
	[ -e "$RUN_DIR/nginx" ] || return 0
	pid_stop "$(readlink -f "$RUN_DIR/nginx")/logs/nginx.pid" nginx
}

# bridges_stop: stop the three bridges this script started.
bridges_stop() {
	local node
	for node in "${NODES[@]}"; do
		pid_stop "$BRIDGE_DIR/$node.pid" "bridge $node"
	done
}

# port_in_use PORT: does something accept connections on 127.0.0.1:PORT?
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# port_owner PORT: the process listening on PORT, when ss can tell.
port_owner() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}

# bridge_start NODE PORT: start a bridge in the background; wait until it
# listens.
bridge_start() {
	local node=$1 port=$2 logfile=$BRIDGE_DIR/$1.log
	nohup "$COMET_ROOT/bridge/comet-bridge" --listen "127.0.0.1:$port" --node-id "$node" \
		--db "host=$PGHOST port=$PGPORT user=postgres dbname=comet" \
		--static "$DEMO_DIR/www" --client "$COMET_ROOT/client/comet.js" \
		--auth-function grid.authenticate --authorize-function grid.authorize \
		--receive-function grid.receive --session-function grid.presence \
		>"$logfile" 2>&1 </dev/null &
	echo $! >"$BRIDGE_DIR/$node.pid"
	for _ in $(seq 100); do
		grep -q "listening on" "$logfile" 2>/dev/null && return 0
		kill -0 "$(cat "$BRIDGE_DIR/$node.pid")" 2>/dev/null || break
		sleep 0.1
	done
	cat "$logfile" >&2
	die "bridge $node did not start on 127.0.0.1:$port"
}

# through_nginx N: N sessions set up through nginx and terminated at once;
# prints their node prefixes (round robin: one on each bridge).
through_nginx() {
	perl -MHTTP::Tiny -e '
		my ($port, $n) = @ARGV;
		my $http = HTTP::Tiny->new(timeout => 10);
		my $url = "http://127.0.0.1:$port/comet";
		for (1 .. $n) {
			my $r = $http->post($url, {content => q({"rid": 1, "subscribe": ["demo"]})});
			$r->{status} == 200 && $r->{content} =~ /"sid":"(([^".]+)\.[^"]+)"/
				or die "a setup through nginx got $r->{status}: $r->{content}\n";
			my ($sid, $node) = ($1, $2);
			$http->post("$url?sid=$sid", {content => qq({"sid": "$sid", "rid": 2, "terminate": true})});
			print "$node\n";
		}' "$NGINX_PORT" "$1"
}

if [ "${1:-}" = stop ]; then
	nginx_stop
	bridges_stop
	if [ -e "$RUN_DIR/pg" ]; then
		cluster_stop "$(readlink -f "$RUN_DIR/pg")"
	fi
	log "stopped"
	exit 0
fi
if [ "${1:-}" = bridge ]; then
	for i in "${!NODES[@]}"; do
		[ "${NODES[$i]}" = "${2:-}" ] || continue
		[ -e "$RUN_DIR/pg" ] || die "no cluster: run make run-cluster first"
		PGDIR=$(readlink -f "$RUN_DIR/pg")
		as_pg_user "$PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1 \
			|| die "the cluster in $PGDIR is not running: run make run-cluster"
		PGPORT=$(cat "$PGDIR/port")
		export PGHOST=$PGDIR PGPORT PGUSER=postgres
		pid_stop "$BRIDGE_DIR/${NODES[$i]}.pid" "bridge ${NODES[$i]}"
		bridge_start "${NODES[$i]}" "${PORTS[$i]}"
		log "bridge ${NODES[$i]} listens on 127.0.0.1:${PORTS[$i]}"
		exit 0
	done
	die "usage: scripts/run-cluster.sh bridge $(IFS='|'; echo "${NODES[*]}")"
fi
[ $# -eq 0 ] || die "usage: scripts/run-cluster.sh [stop | bridge NODE]"

# shellcheck disable=SC2086 # a list of package names
deps_install $COMET_PACKAGES_BUILD nginx-light
build_install

# what an earlier run (of this or of make run) left on our ports
nginx_stop
bridges_stop
pid_stop "$RUN_DIR/bridge.pid" "make run's bridge"
for port in "$NGINX_PORT" "${PORTS[@]}"; do
	if port_in_use "$port"; then
		owner=$(port_owner "$port")
		die "127.0.0.1:$port is in use${owner:+ by $owner}: stop it (make stop, or the system's nginx) and run this again"
	fi
done

run_database "$RUN_DIR"
log "loading the Grid-o-Matic demo"
psql -X -q -v ON_ERROR_STOP=1 -d comet -f "$DEMO_DIR/sql/grid.sql" >/dev/null

mkdir -p "$BRIDGE_DIR"
for i in "${!NODES[@]}"; do
	bridge_start "${NODES[$i]}" "${PORTS[$i]}"
done
log "bridges ${NODES[*]} listen on 127.0.0.1:${PORTS[0]}-${PORTS[2]}"

NGINX_DIR=$(nginx_prefix)
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
"$COMET_ROOT/examples/nginx/render.sh" "$NGINX_DIR" --listen "$NGINX_PORT" \
	--bridges "$(IFS=,; echo "${PORTS[*]}")" --static "$DEMO_DIR/www"
NGINX_ARGS=(-p "$NGINX_DIR" -c "$NGINX_DIR/conf/nginx.conf" -e "$NGINX_DIR/logs/error.log")
"$NGINX_BIN" -q -t "${NGINX_ARGS[@]}" || die "nginx refused the configuration in $NGINX_DIR/conf"
# in the background; its pid file is logs/nginx.pid
"$NGINX_BIN" "${NGINX_ARGS[@]}" || { tail -n 20 "$NGINX_DIR/logs/error.log" >&2; die "nginx did not start"; }
for _ in $(seq 50); do port_in_use "$NGINX_PORT" && break; sleep 0.1; done
nodes=$(through_nginx 3 | sort | tr '\n' ' ') \
	|| { tail -n 20 "$NGINX_DIR/logs/error.log" >&2; die "a session through nginx failed"; }
log "nginx on 127.0.0.1:$NGINX_PORT; three test sessions went to: $nodes"

PSQL="psql -h $PGHOST -p $PGPORT -U postgres comet"
NGINX_LOGS=${NGINX_DIR#"$COMET_ROOT"/}/logs
cat <<INFO

comet is running as a cluster: PostgreSQL 15 with the comet extension
(database "comet"), three comet-bridges (b1, b2, b3 on 127.0.0.1:8081-8083)
and nginx in front of them, serving Grid-o-Matic: each browser's session
lives on one bridge, and nginx routes its requests there by the sid.

  open:     http://127.0.0.1:$NGINX_PORT/
  log in:   alice / wonderland    (player: Aria and Pip)
            bob   / builder       (player: Borin)
            gm    / dungeon       (game master: moves everything)
  move:     $PSQL -c "UPDATE grid.pieces SET x = 6, y = 4 WHERE glyph = 'GB'"
  fail:     kill -9 \$(cat .run/cluster/b2.pid)    (its browsers resume on b1 or b3)
  restart:  scripts/run-cluster.sh bridge b2
  connect:  $PSQL
  logs:     .run/cluster/b1.log b2.log b3.log, $NGINX_LOGS/access.log error.log
  stop:     make stop-cluster

INFO
