#!/usr/bin/env bash
# The fault suite's PRIVATE PostgreSQL, Redis and RabbitMQ: own ports, own state directory, started and
# stopped by the harness itself. Never the shared services on 5432 / 6379 / 5672: other people's tests run
# on those, and a fault suite restarts, pauses and flushes what it runs on.
#
# Sourced by faults/run.sh. Needs FAULTS_DIR (a fresh directory) and the FAULTS_*_PORT variables.
# FAULTS_LISTEN (space-separated addresses, optional): the host-side addresses of the harness's own veth
# pairs (faults/net.sh); each server listens there too, so the cores in their network namespaces reach it
# (and the harness can cut those links). Never any address but loopback and those.

readonly PG_BIN=${FAULTS_PG_BIN:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -n 1)}
readonly RABBIT_NODE=${FAULTS_RABBIT_NODE:-faults${FAULTS_AMQP_PORT}@localhost}

now_ms() { date +%s%3N; }
log() { printf '%s faults: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

wait_until() { # seconds command...
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# MARK: PostgreSQL: a cluster of our own (initdb), trust auth on loopback only.

pg_ctl_() { (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$FAULTS_DIR/pg/data" "$@"); }
pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$FAULTS_PG_PORT"; }
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$FAULTS_PG_PORT" -U postgres -d inventory_faults "$@"; }

pg_init() {
    mkdir -p "$FAULTS_DIR/pg"
    chown postgres "$FAULTS_DIR/pg"
    (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$FAULTS_DIR/pg/data" -U postgres --auth=trust \
        --no-instructions >"$FAULTS_DIR/pg/initdb.log" 2>&1) || {
        cat "$FAULTS_DIR/pg/initdb.log" >&2
        return 1
    }
    cat >>"$FAULTS_DIR/pg/data/postgresql.conf" <<CONF
port = $FAULTS_PG_PORT
listen_addresses = '$(echo 127.0.0.1 ${FAULTS_LISTEN:-} | tr ' ' ',')'
unix_socket_directories = '$FAULTS_DIR/pg'
max_connections = 200
shared_buffers = 64MB
CONF
    local address
    for address in ${FAULTS_PEERS:-}; do # the cores' namespace addresses: trust, like 127.0.0.1
        echo "host all all $address/32 trust" >>"$FAULTS_DIR/pg/data/pg_hba.conf"
    done
}

pg_start() {
    pg_ctl_ -l "$FAULTS_DIR/pg/server.log" -w -t 60 start >/dev/null
    wait_until 60 pg_answers
}

# mode: fast (clean shutdown) or immediate (a crash: recovery from the WAL at start)
pg_stop() { pg_ctl_ -m "${1:-fast}" -w -t 60 stop >/dev/null 2>&1 || true; }

# MARK: Redis: no persistence, like the shared one.

redis_cli() { redis-cli -h 127.0.0.1 -p "$FAULTS_REDIS_PORT" "$@"; }
redis_answers() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }
redis_pid() { cat "$FAULTS_DIR/redis/redis.pid" 2>/dev/null; }

redis_start() {
    mkdir -p "$FAULTS_DIR/redis"
    # shellcheck disable=SC2086 # one argument per address
    redis-server --daemonize yes --bind 127.0.0.1 ${FAULTS_LISTEN:-} --protected-mode no --port "$FAULTS_REDIS_PORT" --save '' --appendonly no \
        --dir "$FAULTS_DIR/redis" --pidfile "$FAULTS_DIR/redis/redis.pid" \
        --logfile "$FAULTS_DIR/redis/redis.log" >/dev/null
    wait_until 20 redis_answers
}

redis_stop() {
    local pid
    pid=$(redis_pid)
    if [ -n "$pid" ]; then kill -CONT "$pid" 2>/dev/null || true; fi
    redis_cli shutdown nosave >/dev/null 2>&1 || true
    if [ -n "$pid" ]; then wait_until 10 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$FAULTS_DIR/redis/redis.pid"
}

# MARK: RabbitMQ: a node of our own (name, AMQP port, distribution port, data, logs, no plugins).

rabbit_env() {
    env RABBITMQ_NODENAME="$RABBIT_NODE" RABBITMQ_DIST_PORT="$FAULTS_DIST_PORT" \
        RABBITMQ_MNESIA_BASE="$FAULTS_DIR/rabbit/mnesia" RABBITMQ_LOG_BASE="$FAULTS_DIR/rabbit/log" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$FAULTS_DIR/rabbit/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$FAULTS_DIR/rabbit/rabbitmq" \
        RABBITMQ_PID_FILE="$FAULTS_DIR/rabbit/rabbit.pid" "$@"
}
rabbitmqctl_() { timeout 60 rabbitmqctl -n "$RABBIT_NODE" "$@"; }
amqp_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$FAULTS_AMQP_PORT") 2>/dev/null; }
rabbit_answers() { amqp_port_open && rabbitmqctl_ -q status >/dev/null 2>&1; }

rabbit_init() {
    mkdir -p "$FAULTS_DIR/rabbit/mnesia" "$FAULTS_DIR/rabbit/log"
    echo '[].' >"$FAULTS_DIR/rabbit/enabled_plugins"
    # Small disk limit: the machine is shared, and a full-disk alarm would block publishers.
    # max_message_size as scripts/services.sh sets it on the shared broker (decision 0015).
    printf 'disk_free_limit.absolute = 50MB\nloopback_users = none\nmax_message_size = 16777216\n' \
        >"$FAULTS_DIR/rabbit/rabbitmq.conf"
    # The AMQP listeners: loopback and the veth addresses (not RABBITMQ_NODE_IP_ADDRESS: one address only).
    local address index=0
    for address in 127.0.0.1 ${FAULTS_LISTEN:-}; do
        index=$((index + 1))
        echo "listeners.tcp.l$index = $address:$FAULTS_AMQP_PORT" >>"$FAULTS_DIR/rabbit/rabbitmq.conf"
    done
    chown -R rabbitmq:rabbitmq "$FAULTS_DIR/rabbit"
    chmod 755 "$FAULTS_DIR"
}

rabbit_start() {
    rabbit_env rabbitmq-server -detached >>"$FAULTS_DIR/rabbit/start.log" 2>&1 || true
    wait_until 120 amqp_port_open && rabbitmqctl_ -q await_startup >/dev/null 2>&1
}

rabbit_stop() {
    rabbitmqctl_ -q stop "$FAULTS_DIR/rabbit/rabbit.pid" >/dev/null 2>&1 || true
    wait_until 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$FAULTS_AMQP_PORT) 2>/dev/null" || true
}

rabbit_kill() { # a broker crash: kill -9 of the Erlang VM, nothing flushed, no clean close of a connection
    local pid
    pid=$(cat "$FAULTS_DIR/rabbit/rabbit.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    wait_until 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$FAULTS_AMQP_PORT) 2>/dev/null" || true
    # epmd forgets the node once its connection closes; a start before that fails "name in use".
    wait_until 30 bash -c "! epmd -names 2>/dev/null | grep -q '^name ${RABBIT_NODE%@*} '" || true
}

# MARK: All three

stack_up() {
    local port
    for port in "$FAULTS_PG_PORT" "$FAULTS_REDIS_PORT" "$FAULTS_AMQP_PORT" "$FAULTS_DIST_PORT"; do
        port_free "$port" || { log "port $port is taken: another fault run? (set FAULTS_PORT_BASE)"; return 1; }
    done
    log "private PostgreSQL on $FAULTS_PG_PORT, Redis on $FAULTS_REDIS_PORT, RabbitMQ on $FAULTS_AMQP_PORT (state: $FAULTS_DIR)"
    pg_init && pg_start || { log "PostgreSQL did not start; see $FAULTS_DIR/pg/server.log"; return 1; }
    psql -X -q -h 127.0.0.1 -p "$FAULTS_PG_PORT" -U postgres -d postgres -c 'CREATE DATABASE inventory_faults' ||
        return 1
    redis_start || { log "Redis did not start; see $FAULTS_DIR/redis/redis.log"; return 1; }
    rabbit_init
    rabbit_start || {
        log "RabbitMQ did not start; see $FAULTS_DIR/rabbit/"
        tail -n 20 "$FAULTS_DIR/rabbit/start.log" "$FAULTS_DIR"/rabbit/log/*.log >&2 2>/dev/null
        return 1
    }
}

stack_down() {
    rabbit_stop
    local pid
    pid=$(cat "$FAULTS_DIR/rabbit/rabbit.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    redis_stop
    pg_stop immediate
}
