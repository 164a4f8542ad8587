#!/bin/bash
# run.sh — run the bridge's black-box tests (bridge/t/*.t) with prove.
#
# Needs: the built bridge (COMET_BRIDGE, default bridge/comet-bridge), the
# comet extension installed, and COMET_TEST_DB: a libpq conninfo for a
# database on a throwaway cluster where CREATE DATABASE and CREATE
# EXTENSION comet are allowed (each test file makes and drops its own
# database there).  PGHOST/PGPORT/PGUSER may stand in for COMET_TEST_DB.
#
#   bridge/t/run.sh                 every test file
#   bridge/t/run.sh bridge/t/02-delivery.t ...   only these
#
# Extra prove options go in PROVE_OPTS (e.g. PROVE_OPTS=-j4).  Exits
# non-zero when any test failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

export COMET_BRIDGE=${COMET_BRIDGE:-$ROOT/bridge/comet-bridge}
if [ -z "${COMET_TEST_DB:-}" ]; then
	COMET_TEST_DB="dbname=postgres"
	[ -n "${PGHOST:-}" ] && COMET_TEST_DB="host=$PGHOST $COMET_TEST_DB"
	[ -n "${PGPORT:-}" ] && COMET_TEST_DB="port=$PGPORT $COMET_TEST_DB"
	[ -n "${PGUSER:-}" ] && COMET_TEST_DB="user=$PGUSER $COMET_TEST_DB"
	export COMET_TEST_DB
fi
[ -x "$COMET_BRIDGE" ] || { echo "run.sh: no bridge at $COMET_BRIDGE" >&2; exit 1; }

if [ $# -eq 0 ]; then
	set -- bridge/t/*.t
fi
# shellcheck disable=SC2086
exec prove -v ${PROVE_OPTS:-} -I bridge/t/lib "$@"
