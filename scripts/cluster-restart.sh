#!/bin/bash
# cluster-restart.sh DIR [fast|immediate] — restart the throwaway cluster in
# DIR with the options it was started with (for fault tests: the bridge must
# reconnect and lose nothing).  Waits until the server accepts connections.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
dir=${1:?usage: cluster-restart.sh DIR [fast|immediate]}
mode=${2:-fast}
as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m "$mode" -w -t 60 restart >/dev/null
