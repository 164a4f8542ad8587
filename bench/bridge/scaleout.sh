# scaleout.sh — run.sh's scale-out scenario: three comet-bridges behind
# nginx against one.  Sourced by run.sh, never run alone: it uses run.sh's
# helpers (log, die, problem, free_port, http_get_from, wait_for, value,
# cpu_ticks, postgres_pid, process_children, fanout_send,
# fanout_publisher_end, per_delivery, fanout_results, loadgen_wait,
# loadgen_fail, thousands, ms, ratio) and settings (WORK, NGINX_DIR, BIN,
# NGINX, BENCH_DB, CHANNEL, FANOUT_MESSAGES, FILES, FILES_SPARE, CORES,
# CLOCK_TICKS) and fills its R[...] with R[KEY,scale_VARIANT,N].
#
# SCALEOUT_SESSIONS sessions (9,000) on one channel receive the fan-out's
# FANOUT_MESSAGES messages (comet.send, each once every session has the
# previous one), three times, each with fresh servers:
#
#   one     one bridge (--node-id b1) holds every session;
#   nginx   three bridges (--node-id b1, b2, b3 on three free ports, one
#           database) behind nginx configured from examples/nginx (rendered
#           by its render.sh into a private prefix): the load generator
#           talks to nginx only; nginx's pool spreads the set-ups over the
#           bridges and routes each poll by the node prefix of its ?sid=;
#   direct  the same three bridges without nginx: the load generator sends
#           session i to bridge i mod 3 itself, so that the difference from
#           "nginx" is what the proxy costs.
#
# One load generator process in each.  Figures: latency p50, p99 and max
# over every delivery, the time until all have each message, and the CPU
# time of the bridges, nginx, the load generator and PostgreSQL.
#
# It must never touch the system's nginx or /etc/nginx (nginx runs in the
# foreground with -p, -c and -e inside NGINX_DIR/scaleout-*, and is stopped
# by its pid), listen beyond 127.0.0.1, or leave a process behind:
# scaleout_stop, also called by run.sh's cleanup, ends what still runs.
# shellcheck shell=bash

SCALEOUT_SESSIONS=${BENCH_SCALEOUT_SESSIONS:-9000}
# examples/nginx routes to three bridges with these node ids
SCALEOUT_NODES="b1 b2 b3"
# nginx's idle connections kept per bridge (and worker): examples/nginx has
# 4096; the default here, the sessions, keeps every connection a poll has
# used for the next poll (see bench/bridge/README.md)
SCALEOUT_KEEPALIVE=${BENCH_SCALEOUT_KEEPALIVE:-}
SCALEOUT_VARIANTS="one nginx direct"
SCALEOUT_NOTE=""
SCALEOUT_PIDS=()		# bridges running, in the order of SCALEOUT_NODES
SCALEOUT_PORTS=()
SCALEOUT_LOGS=()
SCALEOUT_NGINX_PID=
SCALEOUT_NGINX_PORT=
SCALEOUT_NGINX_PREFIX=
# what the static location serves, to know that nginx answers
SCALEOUT_NGINX_PAGE="comet scale-out benchmark"

# scaleout_label VARIANT: the variant's name in the log and the results.
scaleout_label() {
	local per
	per=$(thousands $(((SCALEOUT_SESSIONS + 2) / 3)))
	case $1 in
	one) echo "one bridge × $(thousands "$SCALEOUT_SESSIONS")" ;;
	nginx) echo "three bridges × $per through nginx" ;;
	direct) echo "three bridges × $per, direct" ;;
	esac
}

# scaleout_bridge_start NODE TAG: a fresh comet-bridge --node-id NODE on a
# free port; appends to SCALEOUT_PIDS, SCALEOUT_PORTS, SCALEOUT_LOGS.
scaleout_bridge_start() {
	local node=$1 log_file=$WORK/bridge-$2-$1.log port pid attempt _
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		bridge/comet-bridge --listen "127.0.0.1:$port" --db "dbname=$BENCH_DB" --node-id "$node" \
			--max-sessions 20000 --max-pending 100000 --log-level warn >"$log_file" 2>&1 &
		pid=$!
		SCALEOUT_PIDS+=("$pid")
		for _ in $(seq 100); do
			if grep -q "listening on" "$log_file"; then
				SCALEOUT_PORTS+=("$port")
				SCALEOUT_LOGS+=("$log_file")
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		unset 'SCALEOUT_PIDS[-1]'
		grep -q "Address already in use" "$log_file" || break
		log "port $port was taken (attempt $attempt)"
	done
	cat "$log_file" >&2
	die "bridge $node did not start"
}

# scaleout_nginx_override CONF: the rendered examples/nginx in CONF, made
# able to hold the benchmark's sessions (see bench/bridge/README.md).
scaleout_nginx_override() {
	local conf=$1 connections=$((2 * SCALEOUT_SESSIONS + 1024))
	local keepalive=${SCALEOUT_KEEPALIVE:-$SCALEOUT_SESSIONS}
	sed -i -E -e "s/^([[:space:]]*worker_connections) [0-9]+;/\\1 $connections;/" \
		-e "s/^worker_rlimit_nofile [0-9]+;/worker_rlimit_nofile $FILES;/" "$conf/nginx.conf"
	# the per-bridge upstreams' keepalive (the pool's, 32, carries set-ups only)
	sed -i -E -e "s/^([[:space:]]*keepalive) 4096;/\\1 $keepalive;/" \
		-e "s|^([[:space:]]*access_log) logs/access\\.log comet;|\\1 off;|" "$conf/comet.conf"
	grep -q "^[[:space:]]*worker_connections $connections;" "$conf/nginx.conf" \
		&& grep -q "^worker_rlimit_nofile $FILES;" "$conf/nginx.conf" \
		&& [ "$(grep -c "^[[:space:]]*keepalive $keepalive;" "$conf/comet.conf")" -ge 3 ] \
		&& grep -q "^[[:space:]]*access_log off;" "$conf/comet.conf" \
		|| die "examples/nginx has changed: the scale-out's overrides (worker_connections, worker_rlimit_nofile, keepalive 4096, access_log) no longer apply"
}

# scaleout_nginx_start TAG: nginx from examples/nginx, in NGINX_DIR/TAG, on
# a free port, in front of the bridges running; sets SCALEOUT_NGINX_*.
scaleout_nginx_start() {
	local prefix=$NGINX_DIR/$1 bridges port attempt _
	bridges=$(IFS=,; echo "${SCALEOUT_PORTS[*]}")
	mkdir -p "$prefix/www"
	echo "$SCALEOUT_NGINX_PAGE" >"$prefix/www/index.html"
	chmod -R a+rX "$prefix"
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		bash examples/nginx/render.sh "$prefix" --listen "$port" --bridges "$bridges" \
			--static "$prefix/www" >"$prefix/render.log" 2>&1 \
			|| { cat "$prefix/render.log" >&2; die "examples/nginx/render.sh failed"; }
		scaleout_nginx_override "$prefix/conf"
		rm -f "$prefix/logs/error.log"
		"$NGINX" -p "$prefix/" -c "$prefix/conf/nginx.conf" -e "$prefix/logs/error.log" \
			-g 'daemon off;' >"$prefix/logs/stdout.log" 2>&1 &
		SCALEOUT_NGINX_PID=$!
		SCALEOUT_NGINX_PREFIX=$prefix
		for _ in $(seq 100); do
			if [ "$(http_get_from "$port" /)" = "$SCALEOUT_NGINX_PAGE" ]; then
				SCALEOUT_NGINX_PORT=$port
				return 0
			fi
			kill -0 "$SCALEOUT_NGINX_PID" 2>/dev/null || break
			sleep 0.1
		done
		process_children "$SCALEOUT_NGINX_PID" | xargs -r kill -KILL 2>/dev/null
		kill -KILL "$SCALEOUT_NGINX_PID" 2>/dev/null
		wait "$SCALEOUT_NGINX_PID" 2>/dev/null
		SCALEOUT_NGINX_PID=
		grep -q "Address already in use" "$prefix/logs/error.log" "$prefix/logs/stdout.log" 2>/dev/null || break
		log "port $port was taken (attempt $attempt)"
	done
	cat "$prefix/logs/stdout.log" "$prefix/logs/error.log" >&2 2>/dev/null
	die "nginx (examples/nginx) did not start"
}

# scaleout_stop: the bridges (SIGTERM), then nginx (SIGQUIT, its graceful
# stop); SIGKILL for what has not ended within 5 s; remember a bad exit.
# The bridges first, so that they, not nginx, close the idle connections
# between them: the closing side's TIME_WAIT then holds a bridge's port,
# not one of the ephemeral ports that servers started later may pick.
scaleout_stop() {
	local pid status _
	scaleout_bridges_stop
	if [ -n "$SCALEOUT_NGINX_PID" ]; then
		pid=$SCALEOUT_NGINX_PID
		kill -QUIT "$pid" 2>/dev/null
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			problem "scale-out: nginx did not stop within 5 s"
			# the workers first: once the master is gone they cannot be told apart
			process_children "$pid" | xargs -r kill -KILL 2>/dev/null
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
		status=$?
		[ "$status" -eq 0 ] || problem "scale-out: nginx exited with status $status"
		SCALEOUT_NGINX_PID=
		SCALEOUT_NGINX_PORT=
	fi
}

# scaleout_bridges_stop: the bridges' part of scaleout_stop.
scaleout_bridges_stop() {
	local pid status i _
	for pid in "${SCALEOUT_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for i in "${!SCALEOUT_PIDS[@]}"; do
		pid=${SCALEOUT_PIDS[$i]}
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			problem "scale-out: a bridge did not stop within 5 s (${SCALEOUT_LOGS[$i]:-})"
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
		status=$?
		[ "$status" -eq 0 ] || problem "scale-out: a bridge exited with status $status (${SCALEOUT_LOGS[$i]:-})"
	done
	SCALEOUT_PIDS=()
	SCALEOUT_PORTS=()
	SCALEOUT_LOGS=()
}

# scaleout_metric NAME: NAME from every running bridge's /metrics, as
# "B1/B2/B3".
scaleout_metric() {
	local port out=""
	for port in "${SCALEOUT_PORTS[@]}"; do
		out="$out/$(http_get_from "$port" /metrics | awk -v m="$1" '$1 == m { print $2; exit }')"
	done
	echo "${out#/}"
}

# scaleout_sum "A/B/C": A + B + C.
scaleout_sum() {
	echo "$1" | awk -F/ '{ for (i = 1; i <= NF; i++) t += $i; print t + 0 }'
}

# scaleout_check WHAT: remember a server that is no longer running.
scaleout_check() {
	local i
	for i in "${!SCALEOUT_PIDS[@]}"; do
		kill -0 "${SCALEOUT_PIDS[$i]}" 2>/dev/null \
			|| problem "scale-out: a bridge died during $1; last log lines: $(tail -n 3 "${SCALEOUT_LOGS[$i]}" | tr '\n' ' ')"
	done
	if [ -n "$SCALEOUT_NGINX_PID" ] && ! kill -0 "$SCALEOUT_NGINX_PID" 2>/dev/null; then
		problem "scale-out: nginx died during $1; last log lines: $(tail -n 3 "$SCALEOUT_NGINX_PREFIX/logs/error.log" | tr '\n' ' ')"
	fi
}

# scaleout_variant VARIANT: fresh servers, the sessions, the messages;
# results into R[...,scale_VARIANT,N].
scaleout_variant() {
	local variant=$1 n=$SCALEOUT_SESSIONS kind=scale_$1 tag=scaleout-$1 label node ports started held _
	local bridge_ticks nginx_ticks=0 loadgen_us database_ticks
	label=$(scaleout_label "$variant")
	log "scale-out, $label: starting the servers"
	if [ "$variant" = one ]; then
		scaleout_bridge_start b1 "$tag"
	else
		for node in $SCALEOUT_NODES; do
			scaleout_bridge_start "$node" "$tag"
		done
	fi
	if [ "$variant" = nginx ]; then
		scaleout_nginx_start "$tag"
		ports=$SCALEOUT_NGINX_PORT
	else
		ports=$(IFS=,; echo "${SCALEOUT_PORTS[*]}")
	fi
	log "scale-out, $label: setting up the sessions"
	LOADGEN_OUT=$WORK/loadgen-$tag.out
	started=$EPOCHREALTIME
	"$BIN/loadgen" --protocol comet --port "$ports" --sessions "$n" --channel "$CHANNEL" \
		--expect "$FANOUT_MESSAGES" --duration 180 >"$LOADGEN_OUT" 2>"${LOADGEN_OUT%.out}.err" &
	LOADGEN_PID=$!
	wait_for "$LOADGEN_OUT" '^ready ' 90 || loadgen_fail "$n sessions were not set up within 90 s"
	R[setup,$kind,$n]=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	R[established,$kind,$n]=$(value "$LOADGEN_OUT" ready)
	[ "${R[established,$kind,$n]}" -gt 0 ] || loadgen_fail "no session could be set up"
	for _ in $(seq 150); do
		[ "$(scaleout_sum "$(scaleout_metric comet_requests_pending)")" = "${R[established,$kind,$n]}" ] && break
		sleep 0.1
	done
	sleep 1
	held=$(scaleout_metric comet_requests_pending)
	R[held,$kind,$n]=$(scaleout_sum "$held")
	R[per_bridge,$kind,$n]=$(scaleout_metric comet_sessions)
	scaleout_check "the set-up"
	log "  ${R[established,$kind,$n]} sessions in ${R[setup,$kind,$n]} s; per bridge ${R[per_bridge,$kind,$n]}, polls held $held"
	bridge_ticks=$(cpu_ticks "${SCALEOUT_PIDS[@]}")
	[ -n "$SCALEOUT_NGINX_PID" ] && nginx_ticks=$(cpu_ticks "$SCALEOUT_NGINX_PID")
	database_ticks=$(cpu_ticks "$(postgres_pid)")
	fanout_send "$tag" comet "scale-out, $label"
	bridge_ticks=$(( $(cpu_ticks "${SCALEOUT_PIDS[@]}") - bridge_ticks ))
	[ -n "$SCALEOUT_NGINX_PID" ] && nginx_ticks=$(( $(cpu_ticks "$SCALEOUT_NGINX_PID") - nginx_ticks ))
	database_ticks=$(( $(cpu_ticks "$(postgres_pid)") - database_ticks ))
	R[server_cpu,$kind,$n]=$(per_delivery "$bridge_ticks" "$n")
	[ -n "$SCALEOUT_NGINX_PID" ] && R[nginx_cpu,$kind,$n]=$(per_delivery "$nginx_ticks" "$n")
	R[loadgen_cpu,$kind,$n]=$(loadgen_per_delivery "$n")
	loadgen_us=$(awk -v c="${R[loadgen_cpu,$kind,$n]}" -v d="$((n * FANOUT_MESSAGES))" \
		'BEGIN { printf "%.0f", c * d }')
	# every benchmark process's CPU per message, in ms: over CORES, a floor
	# under the time until all have it
	R[total_cpu,$kind,$n]=$(awk -v t=$((bridge_ticks + nginx_ticks + database_ticks)) -v l="$loadgen_us" \
		-v hz="$CLOCK_TICKS" -v m="$FANOUT_MESSAGES" 'BEGIN { printf "%.0f", (t / hz * 1e6 + l) / 1000 / m }')
	R[floor,$kind,$n]=$(awk -v c="${R[total_cpu,$kind,$n]}" -v k="$CORES" 'BEGIN { printf "%.0f", c / k }')
	R[database_cpu,$kind,$n]=$(awk -v t="$database_ticks" -v hz="$CLOCK_TICKS" -v m="$FANOUT_MESSAGES" \
		'BEGIN { printf "%.1f", t / hz * 1000 / m }')
	fanout_publisher_end "$tag" "scale-out, $label"
	scaleout_check "the fan-out"
	loadgen_wait
	fanout_results "$kind" "$n" "scale-out, $label"
	log "  p50 $(ms "${R[p50,$kind,$n]:-}") ms, p99 $(ms "${R[p99,$kind,$n]:-}") ms, all have it after $(ms "${R[all,$kind,$n]:-}") ms (median)"
	scaleout_stop
}

# scaleout: the scenario; shrinks the sessions when the open-file limit
# cannot hold them (nginx's worker may hold a client's and a bridge's
# connection for each).
scaleout() {
	local variant most
	if [ $((2 * SCALEOUT_SESSIONS + FILES_SPARE)) -gt "$FILES" ]; then
		most=$(( (FILES - FILES_SPARE) / 2 / 3 * 3 ))
		[ "$most" -ge 300 ] || die "the open-file limit ($FILES) is too low for the scale-out scenario"
		SCALEOUT_NOTE="the open-file hard limit is $FILES: the scale-out has $most sessions, not $SCALEOUT_SESSIONS"
		log "warning: $SCALEOUT_NOTE"
		SCALEOUT_SESSIONS=$most
	fi
	for variant in $SCALEOUT_VARIANTS; do
		scaleout_variant "$variant"
	done
}

# scaleout_row NAME KEY UNIT BETTER: one row of the scale-out table (UNIT
# ms: KEY's values are µs, shown in ms).
scaleout_row() {
	local name=$1 key=$2 unit=$3 better=$4 n=$SCALEOUT_SESSIONS one nginx direct
	one=${R[$key,scale_one,$n]:-}
	nginx=${R[$key,scale_nginx,$n]:-}
	direct=${R[$key,scale_direct,$n]:-}
	if [ "$unit" = ms ]; then
		one=$(ms "$one")
		nginx=$(ms "$nginx")
		direct=$(ms "$direct")
	fi
	echo "| $name | ${one:--} | ${nginx:--} | $(ratio "$nginx" "$one") | ${direct:--} | $(ratio "$direct" "$one") | $better |"
}

# scaleout_table: the scale-out section of latest.md.
scaleout_table() {
	local n=$SCALEOUT_SESSIONS what variant v
	echo "## Scale-out: three bridges behind nginx against one"
	echo
	[ -z "$SCALEOUT_NOTE" ] || { echo "**$SCALEOUT_NOTE**"; echo; }
	echo "$(thousands "$n") sessions on one channel, and $FANOUT_MESSAGES messages sent as in the fan-out above" \
		"(\`comet.send\`, each once every session has the previous one and 0.5 s have passed), three times with" \
		"fresh servers: **one bridge** holding every session; **three bridges** (\`--node-id\` b1, b2, b3 on" \
		"three ports, one database) holding a third each **through nginx**, configured from" \
		"\`examples/nginx\` (set-ups spread by its pool, polls routed by the node prefix of \`?sid=\`);" \
		"and the same three bridges reached **directly**, the load generator sending session *i* to bridge" \
		"*i* mod 3 itself, so that the difference between the last two is what nginx costs. One load" \
		"generator process in each, on the same machine ($CORES cores) as everything else."
	echo
	echo "| figure | $(scaleout_label one) | $(scaleout_label nginx) | through nginx / one | $(scaleout_label direct) | direct / one | better |"
	echo "|---|---:|---:|---:|---:|---:|---|"
	scaleout_row "fan-out latency p50, ms" p50 ms lower
	scaleout_row "fan-out latency p99, ms" p99 ms lower
	scaleout_row "fan-out latency max, ms" max ms lower
	scaleout_row "time until all have a message, median of $FANOUT_MESSAGES, ms" all ms lower
	scaleout_row "time until all have a message, worst of $FANOUT_MESSAGES, ms" all_max ms lower
	scaleout_row "first session reached, median, ms" first ms lower
	scaleout_row "delivery rate, messages/s" rate "" higher
	scaleout_row "bridges' CPU per delivery (all bridges), µs" server_cpu "" lower
	scaleout_row "nginx's CPU per delivery (master and workers), µs" nginx_cpu "" lower
	scaleout_row "load generator's CPU per delivery, µs" loadgen_cpu "" lower
	scaleout_row "CPU per message, every benchmark process, ms" total_cpu "" lower
	scaleout_row "the same over the machine's $CORES cores, ms" floor "" lower
	echo
	echo "| detail |$(for variant in $SCALEOUT_VARIANTS; do printf ' %s |' "$(scaleout_label "$variant")"; done)"
	echo "|---|$(for _ in $SCALEOUT_VARIANTS; do printf -- '---:|'; done)"
	for what in "sessions established:established" "set-up of every session, s:setup" \
		"sessions per bridge, as the bridges count them:per_bridge" \
		"polls held, as the bridges count them:held" \
		"time until all have each message, ms:alls" \
		"PostgreSQL's CPU per message (all its processes, background work such as autovacuum included), ms:database_cpu"; do
		printf '| %s |' "${what%:*}"
		for variant in $SCALEOUT_VARIANTS; do
			v=${R[${what#*:},scale_$variant,$n]:-}
			printf ' %s |' "${v:--}"
		done
		echo
	done
	echo
	echo "nginx: $NGINX_VERSION, \`examples/nginx\` as \`make run-cluster\` uses it (\`render.sh\` with free ports" \
		"into a private prefix; \`worker_processes auto\`, here $CORES workers), with four changes for" \
		"$(thousands "$n") held polls: \`worker_connections $((2 * n + 1024))\` (a client's and a bridge's" \
		"connection per held poll) and \`worker_rlimit_nofile $FILES\`; \`keepalive ${SCALEOUT_KEEPALIVE:-$n}\`" \
		"in each bridge's upstream (the example's 16 would close all but 16 of the connections freed" \
		"by a fan-out's answers, so that most next polls open a new connection to their bridge);" \
		"\`access_log off\` (as for Nchan; the bridges log no requests either). Latencies run, as" \
		"above, from the publisher's call to the load generator's read; CPU per delivery is each" \
		"process's CPU time from just before the first message until everyone has the last, over" \
		"$(thousands "$n") × $FANOUT_MESSAGES deliveries. \"CPU per message\" adds the bridges', nginx's, the" \
		"load generator's and PostgreSQL's; over the $CORES cores it is the least time that work can take," \
		"however many bridges share it: where the time until all have a message is close to it, the" \
		"machine's cores, not the bridges, set the pace."
	echo
}
