#!/bin/bash
# render.sh — write a private nginx's configuration from nginx.conf and
# comet.conf in this directory, with other ports and static files, for
# make run-cluster and tests/cluster:
#
#   examples/nginx/render.sh PREFIX [--listen PORT] [--bridges P1,P2,P3]
#                                   [--static DIR]
#
# writes PREFIX/conf/nginx.conf and PREFIX/conf/comet.conf (nginx on
# 127.0.0.1:PORT, default 8080; bridges b1, b2, b3 on 127.0.0.1:P1..P3,
# default 8081-8083; page files from DIR, default the Grid-o-Matic demo's)
# and makes PREFIX/logs and PREFIX/tmp.  Then run
#
#   nginx -p PREFIX -c PREFIX/conf/nginx.conf -e PREFIX/logs/error.log
#
# As root, nginx's workers run as "nobody": when nobody cannot read DIR
# (a checkout under /root), DIR is copied to PREFIX/www and served from
# there; when nobody cannot reach that either, render.sh fails and says so.
# It never touches the system's nginx.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORKER_USER=nobody

die() { printf 'render.sh: %s\n' "$*" >&2; exit 1; }

usage() {
	echo "usage: render.sh PREFIX [--listen PORT] [--bridges P1,P2,P3] [--static DIR]" >&2
	exit 2
}

# sed_escape TEXT: TEXT as the replacement of an s|...|...| command.
sed_escape() {
	printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# valid_port N: a TCP port number.
valid_port() {
	[[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

# worker_can_read DIR: can nginx's worker user read every file under DIR
# (and enter every directory on the way)?  Always true when not root: the
# workers are then the caller.
worker_can_read() {
	local dir=$1 out
	[ "$(id -u)" -eq 0 ] || return 0
	out=$(runuser -u "$WORKER_USER" -- find "$dir" \( ! -readable -o \( -type d ! -executable \) \) \
		-print -quit 2>&1) || return 1
	[ -z "$out" ]
}

[ $# -ge 1 ] || usage
PREFIX=$1
shift
LISTEN=8080
BRIDGES=8081,8082,8083
STATIC=$ROOT/examples/grid-o-matic/www
while [ $# -gt 0 ]; do
	case $1 in
		--listen) LISTEN=${2:?}; shift 2 ;;
		--bridges) BRIDGES=${2:?}; shift 2 ;;
		--static) STATIC=${2:?}; shift 2 ;;
		*) usage ;;
	esac
done

valid_port "$LISTEN" || die "--listen: not a port: $LISTEN"
IFS=, read -r B1 B2 B3 REST <<<"$BRIDGES"
[ -z "${REST:-}" ] || die "--bridges: three ports, not more: $BRIDGES"
for port in "${B1:-}" "${B2:-}" "${B3:-}"; do
	valid_port "$port" || die "--bridges: three ports separated by commas, not: $BRIDGES"
done
[ "$(printf '%s\n' "$LISTEN" "$B1" "$B2" "$B3" | sort -u | wc -l)" -eq 4 ] \
	|| die "nginx and the three bridges need four different ports"
[ -d "$STATIC" ] || die "--static: no directory $STATIC"
STATIC=$(cd "$STATIC" && pwd)
# written into comet.conf unquoted
[[ $STATIC =~ ^[A-Za-z0-9/._+-]+$ ]] || die "--static: use a path of letters, digits and / . _ + -: $STATIC"

mkdir -p "$PREFIX/conf" "$PREFIX/logs" "$PREFIX/tmp"
PREFIX=$(cd "$PREFIX" && pwd)
chmod 755 "$PREFIX" "$PREFIX/tmp"

if ! worker_can_read "$STATIC"; then
	rm -rf "$PREFIX/www"
	cp -R "$STATIC" "$PREFIX/www"
	chmod -R a+rX "$PREFIX/www"
	worker_can_read "$PREFIX/www" \
		|| die "nginx's workers (user $WORKER_USER) can read neither $STATIC nor $PREFIX/www: choose a PREFIX they can reach"
	printf 'render.sh: %s cannot read %s: serving a copy in %s/www\n' \
		"$WORKER_USER" "$STATIC" "$PREFIX" >&2
	STATIC=$PREFIX/www
	[[ $STATIC =~ ^[A-Za-z0-9/._+-]+$ ]] || die "PREFIX: use a path of letters, digits and / . _ + -: $PREFIX"
fi

# The ports go through placeholders, so that swapped ports (8082,8081,...)
# are not replaced twice.
sed -e 's|127\.0\.0\.1:8080;|127.0.0.1:@LISTEN@;|' \
	-e 's|127\.0\.0\.1:8081\b|127.0.0.1:@B1@|g' \
	-e 's|127\.0\.0\.1:8082\b|127.0.0.1:@B2@|g' \
	-e 's|127\.0\.0\.1:8083\b|127.0.0.1:@B3@|g' \
	-e "s|@LISTEN@|$LISTEN|; s|@B1@|$B1|g; s|@B2@|$B2|g; s|@B3@|$B3|g" \
	-e "s|root /var/www/comet;|root $(sed_escape "$STATIC");|" \
	-e 's|/var/log/nginx/comet\.access\.log|logs/access.log|' \
	"$HERE/comet.conf" >"$PREFIX/conf/comet.conf.new"
cp "$HERE/nginx.conf" "$PREFIX/conf/nginx.conf.new"

# every value must have been replaced: the template and this script agree
# (each bridge is in four upstreams: its own, two as a backup, the pool)
rendered=$PREFIX/conf/comet.conf.new
grep -q "^ *listen 127\.0\.0\.1:$LISTEN;" "$rendered" || die "comet.conf: no listen line to change"
for port in "$B1" "$B2" "$B3"; do
	[ "$(grep -c "^ *server 127\.0\.0\.1:$port\b" "$rendered")" -eq 4 ] \
		|| die "comet.conf: expected bridge 127.0.0.1:$port in four upstreams"
done
grep -qF "root $STATIC;" "$rendered" || die "comet.conf: no static root to change"
! grep -q '/var/log/nginx' "$rendered" || die "comet.conf: a log path was left in /var/log/nginx"
mv "$PREFIX/conf/comet.conf.new" "$PREFIX/conf/comet.conf"
mv "$PREFIX/conf/nginx.conf.new" "$PREFIX/conf/nginx.conf"
