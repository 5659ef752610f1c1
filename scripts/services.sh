#!/usr/bin/env bash
# scripts/services.sh up|down|status|python-deps|browser
#
# Brings up the backing services warren needs (RabbitMQ and Redis) on loopback
# for `make run` and `make test`. For each service, in this order:
#   1. reuse a server already answering at WARREN_AMQP_URL / WARREN_REDIS_URL
#      (a real protocol check: AMQP login + vhost open, Redis PING);
#   2. else, if a Docker engine answers, `docker compose up -d` its service from
#      docker-compose.yml;
#   3. else, as root on Debian/Ubuntu, install it with apt-get if needed and
#      start it locally, bound to loopback only;
#   4. else fail, saying what to install or start.
# Local servers: redis-server as user redis, with an append-only file; the Debian
# RabbitMQ node (data in /var/lib/rabbitmq, log in /var/log/rabbitmq) with the
# management UI on 127.0.0.1:15672; epmd and Erlang distribution on loopback.
# `down` stops only what this script started (recorded in $STATE_DIR).
# `status` reports whether each service answers; exit 0 if both do.
# `python-deps` and `browser` install what the Python worker's and the
# dashboard's tests need, as root with apt-get.
#
# The URLs are read, and the protocols spoken, by internal/servicesprobe, with
# the libraries warren uses; up, down and status build it into bin/ first (go
# build relinks it only when its sources change), so they need Go.
#
# Environment:
#   WARREN_AMQP_URL          default amqp://guest:guest@127.0.0.1:5672/
#   WARREN_REDIS_URL         default redis://127.0.0.1:6379/0
#   WARREN_SERVICES_TIMEOUT  seconds to wait for a service to answer (default 120)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPOSE_FILE=$ROOT/docker-compose.yml
STATE_DIR=${XDG_RUNTIME_DIR:-/tmp}/warren-services
AMQP_URL=${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
REDIS_URL=${WARREN_REDIS_URL:-redis://127.0.0.1:6379/0}
TIMEOUT=${WARREN_SERVICES_TIMEOUT:-120}
MGMT_PORT=15672
PROBE=$ROOT/bin/services-probe

say() { printf 'services: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# ---------------------------------------------------------------------------
# The probe (internal/servicesprobe; its doc says what it checks)

build_probe() {
	local go
	go=$(command -v go || echo /usr/local/go/bin/go)
	[[ -x $go ]] || die "Go is not on PATH (nor in /usr/local/go/bin): services.sh needs it to build internal/servicesprobe"
	mkdir -p "$(dirname "$PROBE")"
	(cd "$ROOT" && "$go" build -o "$PROBE" ./internal/servicesprobe) ||
		die "cannot build the probe: cd $ROOT && go build ./internal/servicesprobe"
}

# probe amqp|redis, or probe listens HOST PORT: 0 the server answers (and
# takes the URL's login), 3 it answers but refuses the login, 1 nothing
# (usable) answers. The URLs go in the environment, out of sight of ps.
probe() {
	local rc=0 why
	why=$(WARREN_AMQP_URL=$AMQP_URL WARREN_REDIS_URL=$REDIS_URL "$PROBE" "$@" 2>&1) || rc=$?
	case $rc in 0 | 1 | 3) return "$rc" ;; esac
	die "$PROBE $*: $why"
}

# Sets AMQP_HOST AMQP_PORT AMQP_USER AMQP_VHOST AMQP_TLS, REDIS_HOST REDIS_PORT
# REDIS_PASS REDIS_TLS (TLS: 0 or 1) from the URLs.
parse_urls() {
	local vars
	vars=$(WARREN_AMQP_URL=$AMQP_URL WARREN_REDIS_URL=$REDIS_URL "$PROBE" urls 2>&1) || die "$vars"
	eval "$vars"
}

# service_vars NAME: what up_one, status and refuse_taken_port need of the
# service: S_KIND (the probe's word), S_HOST, S_PORT, S_TLS, S_WHERE, S_TITLE
# and S_VAR (its URL's variable).
service_vars() {
	if [[ $1 == rabbitmq ]]; then
		S_KIND=amqp S_HOST=$AMQP_HOST S_PORT=$AMQP_PORT S_TLS=$AMQP_TLS S_TITLE=RabbitMQ S_VAR=WARREN_AMQP_URL
		S_WHERE="$AMQP_HOST:$AMQP_PORT (vhost $AMQP_VHOST, user $AMQP_USER)"
	else
		S_KIND=redis S_HOST=$REDIS_HOST S_PORT=$REDIS_PORT S_TLS=$REDIS_TLS S_TITLE=Redis S_VAR=WARREN_REDIS_URL
		S_WHERE="$REDIS_HOST:$REDIS_PORT"
	fi
}

is_loopback() {
	case $1 in
	localhost | 127.* | ::1) return 0 ;;
	*) return 1 ;;
	esac
}

# Address a locally started server binds to.
bind_addr() { if [[ $1 == ::1 ]]; then echo ::1; else echo 127.0.0.1; fi; }

# ---------------------------------------------------------------------------
# State: $STATE_DIR/<service> records how this script started it.

init_state() {
	[[ -d $STATE_DIR ]] || mkdir -m 700 "$STATE_DIR"
	[[ -O $STATE_DIR ]] || die "$STATE_DIR is not owned by $(id -un); remove it or set XDG_RUNTIME_DIR"
}
record() { printf '%s\n' "${*:2}" >"$STATE_DIR/$1"; }
recorded() { cat "$STATE_DIR/$1" 2>/dev/null || true; }
forget() { rm -f "$STATE_DIR/$1"; }
# Serialize up/down. Every command that may leave a daemon behind (apt-get's
# postinst, redis-server, rabbitmq-*, compose) runs with 9>&-, or the daemon
# would inherit the lock and hold it forever.
lock() {
	exec 9>"$STATE_DIR/lock"
	if command -v flock >/dev/null; then
		flock -w 900 9 || die "another services.sh is still running (lock $STATE_DIR/lock)"
	fi
}

# ---------------------------------------------------------------------------
# Docker compose

COMPOSE=()
DOCKER_OK=
docker_ok() {
	if [[ -z $DOCKER_OK ]]; then
		DOCKER_OK=no
		if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
			if docker compose version >/dev/null 2>&1; then
				COMPOSE=(docker compose -f "$COMPOSE_FILE") DOCKER_OK=yes
			elif command -v docker-compose >/dev/null; then
				COMPOSE=(docker-compose -f "$COMPOSE_FILE") DOCKER_OK=yes
			else
				say "a Docker engine answers, but neither 'docker compose' nor docker-compose is installed"
			fi
		fi
	fi
	[[ $DOCKER_OK == yes ]]
}

compose() {
	WARREN_AMQP_PORT=$AMQP_PORT WARREN_REDIS_PORT=$REDIS_PORT "${COMPOSE[@]}" "$@"
}

# ---------------------------------------------------------------------------
# Local servers (Debian/Ubuntu, root)

local_ok() {
	[[ $EUID -eq 0 && -f /etc/debian_version ]] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null
}

# ensure_pkgs PKG...: apt-get install the ones that are not installed; they
# are added to INSTALLED_NOW.
INSTALLED_NOW=()
ensure_pkgs() {
	local p missing=() log=$STATE_DIR/apt.log
	for p in "$@"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	say "installing ${missing[*]} with apt-get (log: $log)"
	if ! {
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update &&
			DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install "${missing[@]}"
	} </dev/null >"$log" 2>&1 9>&-; then
		tail -n 20 "$log" >&2
		die "apt-get install ${missing[*]} failed (full log: $log)"
	fi
	INSTALLED_NOW+=("${missing[@]}")
}

# Without systemd (a container), a package's postinst may start its server
# through the init script, with the package defaults: RabbitMQ then listens on
# all interfaces, without the management plugin. Stop the servers started that
# way by the install we just did, so that we start our own, as everywhere else.
# (Under systemd they are system services: we leave them to systemd.)
stop_postinst_servers() {
	local pkg
	[[ ! -d /run/systemd/system ]] || return 0
	# The init script runs rabbitmqctl, which starts epmd if it is not running.
	if [[ " ${INSTALLED_NOW[*]} " == *" rabbitmq-server "* ]]; then rabbit_dist_env; fi
	for pkg in "${INSTALLED_NOW[@]}"; do
		[[ -x /etc/init.d/$pkg ]] || continue
		"/etc/init.d/$pkg" status >/dev/null 2>&1 9>&- || continue
		say "the $pkg package started $pkg with its defaults; stopping it to start it on loopback"
		"/etc/init.d/$pkg" stop >/dev/null 2>&1 9>&- || say "warning: /etc/init.d/$pkg stop failed"
		if [[ $pkg == rabbitmq-server ]] && command -v epmd >/dev/null &&
			! epmd -names 2>/dev/null | grep -q '^name '; then
			# That node started epmd on all interfaces; ours restarts it on loopback.
			epmd -kill >/dev/null 2>&1 || true
		fi
	done
}

# Warn when a server we reuse on this machine also listens beyond loopback.
warn_exposed() {
	local name=$1 port=$2 addrs
	command -v ss >/dev/null || return 0
	addrs=$(ss -Hltn "sport = :$port" 2>/dev/null | awk '{ print $4 }' |
		grep -Ev '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):' || true)
	if [[ -n $addrs ]]; then
		say "warning: $name also listens beyond loopback: $(paste -sd ' ' <<<"$addrs")"
	fi
	return 0
}

# wait_for NAME KIND [ALIVE]: wait up to TIMEOUT seconds for `probe KIND` to
# return 0; return 3 if the server refuses the login. ALIVE, if set, is a
# function that fails when the server process is gone.
wait_for() {
	local name=$1 kind=$2 alive=${3:-} deadline=$((SECONDS + TIMEOUT)) rc
	while :; do
		rc=0
		probe "$kind" || rc=$?
		((rc != 0)) || return 0
		if ((rc == 3)); then
			say "$name answers but refuses the login (user/password or vhost) in the URL"
			return 3
		fi
		if [[ -n $alive ]] && ! "$alive"; then
			say "$name stopped while starting"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			say "$name did not answer within ${TIMEOUT}s"
			return 1
		fi
		sleep 1
	done
}

redis_pid_file() { echo "/run/redis/warren-redis-$REDIS_PORT.pid"; }
redis_log_file() { echo "/var/log/redis/warren-redis-$REDIS_PORT.log"; }

pid_is() { [[ -n $1 && -r /proc/$1/comm && $(cat "/proc/$1/comm" 2>/dev/null) == "$2"* ]]; }

start_redis_local() {
	local pid args
	ensure_pkgs redis-server
	command -v redis-server >/dev/null || die "redis-server is not on PATH after installing redis-server"
	mkdir -p /run/redis
	chown redis:redis /run/redis
	# Job records must outlive a Redis restart, as the messages in RabbitMQ
	# do: keep an append-only file, flushed every second.
	args=(--bind "$(bind_addr "$REDIS_HOST")" --port "$REDIS_PORT" --protected-mode yes
		--daemonize yes --pidfile "$(redis_pid_file)" --logfile "$(redis_log_file)"
		--dir /var/lib/redis --save '' --appendonly yes --appendfsync everysec
		--appendfilename "warren-$REDIS_PORT.aof")
	# Give the local server the URL's password so warren can log in.
	if [[ -n $REDIS_PASS ]]; then args+=(--requirepass "$REDIS_PASS"); fi
	say "starting redis-server on $(bind_addr "$REDIS_HOST"):$REDIS_PORT"
	runuser -u redis -- redis-server "${args[@]}" </dev/null >/dev/null 9>&-
	if ! wait_for redis redis; then
		tail -n 20 "$(redis_log_file)" >&2 || true
		die "redis-server did not come up (log: $(redis_log_file))"
	fi
	pid=$(cat "$(redis_pid_file)" 2>/dev/null || true)
	record redis local "$REDIS_PORT" "$pid"
}

stop_redis_local() {
	local port=$1 pid=$2 i
	if pid_is "$pid" redis-server; then
		say "stopping redis-server (pid $pid, port $port)"
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 100); do
			pid_is "$pid" redis-server || break
			sleep 0.1
		done
		if pid_is "$pid" redis-server; then
			say "redis-server pid $pid did not stop; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	else
		say "redis-server started earlier (pid ${pid:-?}) is no longer running"
	fi
}

# RabbitMQ node name, host and where the Debian package keeps its log.
rabbit_host() { hostname -s 2>/dev/null || hostname; }
rabbit_log() {
	local f
	f=/var/log/rabbitmq/${RABBITMQ_NODENAME:-rabbit@$(rabbit_host)}.log
	[[ -f $f ]] || f=$(find /var/log/rabbitmq -maxdepth 1 -name '*.log' -printf '%T@ %p\n' 2>/dev/null |
		sort -rn | awk 'NR == 1 { print $2 }' || true)
	echo "$f"
}
# PID of the running RabbitMQ server VM (not CLI tools), if any.
rabbit_pid() { pgrep -u rabbitmq -f -- '-s rabbit boot' | head -n 1 || true; }
rabbit_alive() { [[ -n $(rabbit_pid) ]]; }

# Keep epmd and the Erlang distribution listener on loopback. The CLI tools
# reach the node through the address its host name resolves to; if that is a
# loopback address (127.0.0.1, or 127.0.1.1 in a stock Debian /etc/hosts) bind
# to it, otherwise leave distribution alone (it is protected by the cookie).
RABBIT_DIST_ARGS='' DIST_ENV_DONE=0
rabbit_dist_env() {
	local ip tuple
	((DIST_ENV_DONE == 0)) || return 0
	DIST_ENV_DONE=1
	ip=$(getent ahostsv4 "$(rabbit_host)" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
	case $ip in
	127.*)
		tuple="{${ip//./,}}"
		export ERL_EPMD_ADDRESS=$ip
		RABBIT_DIST_ARGS="-kernel inet_dist_use_interface $tuple"
		export RABBITMQ_CTL_ERL_ARGS=${RABBITMQ_CTL_ERL_ARGS:-$RABBIT_DIST_ARGS}
		;;
	*)
		RABBIT_DIST_ARGS=
		say "warning: host name $(rabbit_host) resolves to '${ip:-nothing}', not loopback;" \
			"Erlang distribution (epmd 4369, 25672) will listen on all interfaces"
		;;
	esac
}

rabbit_fail() {
	local log
	log=$(rabbit_log)
	if [[ -n $log ]]; then
		say "last lines of $log:"
		tail -n 30 "$log" >&2 || true
	fi
	if [[ -s $STATE_DIR/rabbitmq-start.log ]]; then
		say "output of rabbitmq-server -detached:"
		tail -n 20 "$STATE_DIR/rabbitmq-start.log" >&2
	fi
	die "$*"
}

# rabbit_env_file writes the environment file the node's rabbitmq-env sources
# as the rabbitmq user (RABBITMQ_CONF_ENV_FILE), and prints its path. It
# sources the system's file, then raises the soft limit of open files to the
# hard one (at most 65536): su leaves the rabbitmq user init's 1024 (through
# pam_limits), every quorum queue keeps files open, a test run keeps hundreds
# of them, and a node out of descriptors stops accepting connections, which
# clients see as timeouts. RabbitMQ's production checklist asks for 65536.
rabbit_env_file() {
	local f=/var/lib/rabbitmq/warren-rabbitmq-env.conf
	[[ -d /var/lib/rabbitmq ]] || return 0
	cat >"$f" <<-'EOF' || return 0
		# Written by warren's scripts/services.sh, which starts this node with
		# RABBITMQ_CONF_ENV_FILE naming this file.
		if [ -f /etc/rabbitmq/rabbitmq-env.conf ]; then . /etc/rabbitmq/rabbitmq-env.conf; fi
		warren_nofile=$(ulimit -H -n)
		if [ "$warren_nofile" = unlimited ] || [ "$warren_nofile" -gt 65536 ]; then warren_nofile=65536; fi
		ulimit -S -n "$warren_nofile" 2>/dev/null || true
		unset warren_nofile
	EOF
	chmod 644 "$f" && echo "$f" || true
}

start_rabbit_local() {
	local bind plugins=/etc/rabbitmq/enabled_plugins
	ensure_pkgs rabbitmq-server
	command -v rabbitmq-server >/dev/null || die "rabbitmq-server is not on PATH after installing rabbitmq-server"
	rabbit_dist_env
	if rabbit_alive; then
		# E.g. the package's postinst started it, or an earlier `up` is still
		# booting it: wait for that node rather than starting a second one.
		say "a RabbitMQ node is already running (pid $(rabbit_pid)); waiting for it to answer"
	else
		refuse_taken_port rabbitmq
		if ! grep -qs 'rabbitmq_management[],. ]' "$plugins"; then
			say "enabling rabbitmq_management"
			rabbitmq-plugins --offline enable rabbitmq_management >/dev/null 9>&- ||
				die "rabbitmq-plugins --offline enable rabbitmq_management failed"
		fi
		bind=$(bind_addr "$AMQP_HOST")
		say "starting rabbitmq-server on $bind:$AMQP_PORT"
		# The Debian wrapper drops to the rabbitmq user; the environment goes with it.
		local envfile
		envfile=$(rabbit_env_file)
		if ! RABBITMQ_NODE_IP_ADDRESS=$bind RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_CONF_ENV_FILE=${envfile:-/etc/rabbitmq/rabbitmq-env.conf} \
			RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-rabbitmq_management tcp_config [{ip,\"$bind\"},{port,$MGMT_PORT}] $RABBIT_DIST_ARGS" \
			rabbitmq-server -detached </dev/null >"$STATE_DIR/rabbitmq-start.log" 2>&1 9>&-; then
			rabbit_fail "rabbitmq-server -detached failed"
		fi
		record rabbitmq local "$EPMD_WAS_RUNNING"
	fi
	# -detached returns before the VM shows up; give it a moment.
	local i rc
	for i in $(seq 1 50); do
		rabbit_alive && break
		sleep 0.2
	done
	rabbit_alive || rabbit_fail "the RabbitMQ node exited right after starting"
	say "waiting for RabbitMQ to boot (up to ${TIMEOUT}s)"
	rc=0
	wait_for rabbitmq amqp rabbit_alive || rc=$?
	if ((rc == 3)); then
		die "RabbitMQ is up, but refuses user '$AMQP_USER' on vhost '$AMQP_VHOST'. Create them, e.g.:" \
			"rabbitmqctl add_vhost '$AMQP_VHOST'; rabbitmqctl add_user '$AMQP_USER' PASSWORD;" \
			"rabbitmqctl set_permissions -p '$AMQP_VHOST' '$AMQP_USER' '.*' '.*' '.*'"
	fi
	((rc == 0)) || rabbit_fail "RabbitMQ did not come up"
	# The AMQP listener is up; make sure the boot (plugins included) finished.
	timeout "$TIMEOUT" rabbitmqctl -q await_startup --timeout "$TIMEOUT" >/dev/null 2>&1 9>&- ||
		say "warning: rabbitmqctl await_startup failed, but AMQP answers"
	# Remember which VM is ours, so `down` does not stop a different one.
	if [[ -n $(recorded rabbitmq) ]]; then
		record rabbitmq local "$(recorded rabbitmq | awk '{ print $2 }')" "$(rabbit_pid)"
	fi
}

stop_rabbit_local() {
	local epmd_was_running=$1 pid=$2 cur i
	rabbit_dist_env >/dev/null 2>&1
	cur=$(rabbit_pid)
	if [[ -z $cur ]]; then
		say "the RabbitMQ node started earlier is no longer running"
	elif [[ -n $pid && $cur != "$pid" ]]; then
		say "the running RabbitMQ node (pid $cur) is not the one services.sh started (pid $pid); leaving it"
		return 0
	else
		say "stopping RabbitMQ (pid $cur)"
		timeout 120 rabbitmqctl -q stop >/dev/null 2>&1 9>&- || say "rabbitmqctl stop failed; sending SIGTERM"
		for i in $(seq 1 600); do
			pid_is "$cur" beam || break
			((i != 300)) || kill -TERM "$cur" 2>/dev/null || true
			sleep 0.1
		done
		pid_is "$cur" beam && die "RabbitMQ (pid $cur) did not stop"
	fi
	# epmd was started by the node we started; stop it once nothing uses it.
	if [[ $epmd_was_running == 0 ]] && command -v epmd >/dev/null &&
		! epmd -names 2>/dev/null | grep -q '^name '; then
		epmd -kill >/dev/null 2>&1 || true
	fi
}

# ---------------------------------------------------------------------------
# Commands

help_and_die() {
	local why="not root"
	[[ $EUID -ne 0 ]] || why="not Debian/Ubuntu (no apt-get)"
	say "cannot start $1: no Docker engine answers, and services.sh installs servers only as root on Debian/Ubuntu ($why)."
	say "Do one of:"
	say "  - start a Docker engine with the compose plugin, then: $0 up"
	say "  - on Debian/Ubuntu: sudo $0 up   (installs rabbitmq-server and redis-server with apt-get)"
	say "  - install and start RabbitMQ >= 3.10 (with rabbitmq-plugins enable rabbitmq_management) and"
	say "    Redis >= 7 yourself; if they do not listen on the defaults, point warren at them:"
	say "      export WARREN_AMQP_URL=amqp://USER:PASS@HOST:5672/   (now $AMQP_HOST:$AMQP_PORT)"
	say "      export WARREN_REDIS_URL=redis://[:PASS@]HOST:6379/0  (now $REDIS_HOST:$REDIS_PORT)"
	exit 1
}

# refuse_taken_port NAME: fail if something else already listens on the port
# the service should answer on.
refuse_taken_port() {
	service_vars "$1"
	if probe listens "$S_HOST" "$S_PORT"; then
		die "something that is not $S_TITLE listens on $S_HOST:$S_PORT; stop it or change $S_VAR"
	fi
}

# up_one NAME: make one service answer.
up_one() {
	local name=$1 kind where rc=0
	service_vars "$name"
	kind=$S_KIND where=$S_WHERE
	probe "$kind" || rc=$?
	case $rc in
	0)
		say "$name: answering at $where"
		if is_loopback "$S_HOST"; then warn_exposed "$name" "$S_PORT"; fi
		return 0
		;;
	3) die "$name at $where answers but refuses the login (user/password or vhost) in the URL; fix the URL or the server" ;;
	esac
	if ! is_loopback "$S_HOST"; then
		die "$name does not answer at $where; it is not on this machine, so start it there or fix the URL"
	fi
	if ((S_TLS == 1)); then
		die "$name does not answer at $where, and services.sh only starts plain-text servers; use an amqp:// / redis:// URL"
	fi
	if docker_ok; then
		if [[ -n $(compose ps -q "$name" 2>/dev/null) ]]; then
			say "$name: its compose container is already running; waiting for it to answer"
		else
			refuse_taken_port "$name"
			say "$name: starting it with ${COMPOSE[*]}"
			compose up -d "$name" >&2 9>&- || die "${COMPOSE[*]} up -d $name failed"
			record "$name" compose "$COMPOSE_FILE"
		fi
		wait_for "$name" "$kind" || die "$name (compose) did not answer; see: ${COMPOSE[*]} logs $name"
	elif local_ok; then
		if [[ $name == rabbitmq ]]; then
			start_rabbit_local
		else
			refuse_taken_port redis
			start_redis_local
		fi
	else
		help_and_die "$name"
	fi
	say "$name: answering at $where"
}

cmd_up() {
	init_state
	lock
	local t0=$SECONDS rc pkgs=()
	# Whether epmd runs before we touch anything (rabbitmqctl starts it).
	EPMD_WAS_RUNNING=0
	if command -v epmd >/dev/null && epmd -names >/dev/null 2>&1; then EPMD_WAS_RUNNING=1; fi
	# On the local path, install whatever is missing in one apt-get run.
	if local_ok; then
		rc=0
		probe redis || rc=$?
		if ((rc == 1 && REDIS_TLS == 0)) && is_loopback "$REDIS_HOST"; then pkgs+=(redis-server); fi
		rc=0
		probe amqp || rc=$?
		if ((rc == 1 && AMQP_TLS == 0)) && is_loopback "$AMQP_HOST"; then pkgs+=(rabbitmq-server); fi
		if ((${#pkgs[@]})) && ! docker_ok; then
			ensure_pkgs "${pkgs[@]}"
			stop_postinst_servers
		fi
	fi
	up_one redis
	up_one rabbitmq
	say "up in $((SECONDS - t0))s"
	if is_loopback "$AMQP_HOST" && probe listens "$AMQP_HOST" "$MGMT_PORT"; then
		say "RabbitMQ management UI: http://$AMQP_HOST:$MGMT_PORT/"
	fi
}

cmd_down() {
	init_state
	lock
	local svc rec kind epmd port pid did=0 compose_done=0
	for svc in rabbitmq redis; do
		rec=$(recorded "$svc")
		[[ -n $rec ]] || continue
		did=1
		read -r kind _ <<<"$rec"
		case $kind in
		compose)
			if ((compose_done == 0)); then
				if docker_ok; then
					say "docker compose down"
					compose down >&2 9>&- || die "${COMPOSE[*]} down failed"
				else
					say "the Docker engine does not answer; cannot run docker compose down"
				fi
				compose_done=1
			fi
			;;
		local)
			if [[ $svc == rabbitmq ]]; then
				read -r _ epmd pid <<<"$rec"
				stop_rabbit_local "${epmd:-1}" "${pid:-}"
			else
				read -r _ port pid <<<"$rec"
				stop_redis_local "$port" "${pid:-}"
			fi
			;;
		esac
		forget "$svc"
	done
	((did)) || say "nothing to stop: services.sh did not start RabbitMQ or Redis"
	return 0
}

cmd_status() {
	local svc rc ok=0 how
	for svc in rabbitmq redis; do
		service_vars "$svc"
		rc=0
		probe "$S_KIND" || rc=$?
		how=$(recorded "$svc" | awk '{ print $1 }')
		how=${how:+ [started by services.sh: $how]}
		case $rc in
		0) say "$svc: up, answering at $S_WHERE$how" ;;
		3) say "$svc: answers at $S_WHERE but refuses the login (user/password or vhost) in the URL$how" ;;
		*) say "$svc: down, nothing answers at $S_WHERE$how" ;;
		esac
		((rc == 0)) || ok=1
	done
	return "$ok"
}

# python-deps: the Python worker (workers/python) and its conformance test
# need pika and redis for the system Python, /usr/bin/python3.
cmd_python_deps() {
	if /usr/bin/python3 -c 'import pika, redis' 2>/dev/null; then
		return 0
	fi
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		die "the Python worker's test needs pika and redis for /usr/bin/python3: install python3-pika and python3-redis (Debian/Ubuntu: apt-get install python3-pika python3-redis)"
	fi
	init_state
	lock
	ensure_pkgs python3-pika python3-redis
}

# browser: the dashboard's tests drive a headless Chromium. Without root
# they cannot install it, and skip with a message saying how.
cmd_browser() {
	if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then
		return 0
	fi
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		echo "services: no Chromium, so the dashboard's browser tests will skip; install it (Debian/Ubuntu: apt-get install chromium)" >&2
		return 0
	fi
	init_state
	lock
	ensure_pkgs chromium
}

case ${1:-} in
up | down | status)
	build_probe
	parse_urls
	"cmd_$1"
	;;
python-deps) cmd_python_deps ;;
browser) cmd_browser ;;
*)
	echo "usage: $0 up|down|status|python-deps|browser" >&2
	exit 2
	;;
esac
