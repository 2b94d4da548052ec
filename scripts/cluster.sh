#!/usr/bin/env bash
# The multi-node topology of issue 18 on ONE machine, for tests and demos, beside the single-node services
# of scripts/services.sh (never on their ports 5432 / 6379 / 5672, never stopping them):
#
#   scripts/cluster.sh up        install what is missing, start what does not answer, wait until all is ready
#   scripts/cluster.sh status    one line per node; exit 1 if any is down
#   scripts/cluster.sh down      stop every node this script runs (the state stays: `up` resumes it)
#   scripts/cluster.sh down --purge   the same, then delete the state (the next `up` starts from scratch)
#   scripts/cluster.sh env       the services' connection variables for this topology (`eval` them)
#
# The topology (ports shift with CLUSTER_PORT_BASE, default 5800; README "Running on more than one machine"):
#   RabbitMQ   three nodes cluster1..3@localhost, AMQP 5801-5803, Erlang distribution 25801-25803, one
#              cluster (rabbitmqctl join_cluster), the broker users of scripts/services.sh (users replicate)
#   etcd       three members, clients 2801-2803, peers 2811-2813: Patroni's consensus store
#   PostgreSQL two Patroni members pg1/pg2, PostgreSQL 5811-5812, Patroni REST 8811-8812, synchronous
#              replication (synchronous_mode, synchronous_commit=on), database inventory_db, postgres/postgres
#   Redis      master 6811, replica 6812 (no persistence, like the single-node one), Sentinels 26811-26813
#              watching master name `seat-inventory` (quorum 2)
#
# `up` is idempotent: a node that answers is kept, a missing one is started and joined; every wait polls
# the engine itself for readiness (rabbitmqctl await_startup and cluster_status, etcdctl endpoint health,
# Patroni's REST /primary and /sync, redis-cli role, the Sentinels' get-master-addr-by-name) with a bound.
# Everything lives under CLUSTER_DIR (default /var/tmp/seat-inventory-cluster). Needs root (the servers run
# as their Debian users: rabbitmq, postgres). RabbitMQ nodes are heavy on a small machine: `down` when done.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly BASE=${CLUSTER_PORT_BASE:-5800}
readonly CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/seat-inventory-cluster}
readonly NODES=(1 2 3)
# Ports: node i of each engine.
amqp_port() { echo $((BASE + $1)); }
dist_port() { echo $((BASE + 20000 + $1)); }
etcd_client_port() { echo $((BASE - 3000 + $1)); }
etcd_peer_port() { echo $((BASE - 3000 + 10 + $1)); }
pg_port() { echo $((BASE + 10 + $1)); }
patroni_port() { echo $((BASE + 3010 + $1)); }
redis_port() { echo $((BASE + 1010 + $1)); }
sentinel_port() { echo $((BASE + 21010 + $1)); }
# Node names are machine-wide (epmd): a second topology on another CLUSTER_PORT_BASE gets names of its own.
rabbit_node() { if [ "$BASE" = 5800 ]; then echo "cluster$1@localhost"; else echo "cluster$1-$BASE@localhost"; fi; }

readonly DATABASE=inventory_db DB_USER=postgres DB_PASSWORD=postgres REPLICATION_PASSWORD=replicator
readonly SCOPE=seat-inventory SENTINEL_MASTER=seat-inventory
readonly APT_PACKAGES=(rabbitmq-server postgresql patroni etcd-server etcd-client redis-server redis-sentinel)
PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)
readonly PG_BIN
# Bounded waits, in seconds.
readonly RABBIT_WAIT=180 ETCD_WAIT=60 PG_WAIT=120 REDIS_WAIT=30

say() { printf '%-10s %s\n' "$1" "$2"; }
fail() {
    printf 'cluster.sh: %s\n' "$*" >&2
    exit 1
}
wait_for() { # seconds command...
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.25
    done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_closed() { ! port_open "$1"; }
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# MARK: - Packages

install_packages() {
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say packages "installing ${missing[*]} (log: $CLUSTER_DIR/apt.log)"
    # The packages' own services are not started (policy-rc.d, as scripts/services.sh does): this script runs
    # the nodes on its own ports; a Debian etcd or Patroni on the default ports would only be in the way.
    local policy=/usr/sbin/policy-rc.d added=false status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=true
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >>"$CLUSTER_DIR/apt.log" 2>&1 || status=$?
    if $added; then rm -f "$policy"; fi
    [ "$status" = 0 ] || fail "apt-get install ${missing[*]} failed; see $CLUSTER_DIR/apt.log"
}

# MARK: - RabbitMQ

rabbit_dir() { echo "$CLUSTER_DIR/rabbit$1"; }
rabbit_env() { # node command...
    local node=$1 dir
    dir=$(rabbit_dir "$node")
    shift
    env RABBITMQ_NODENAME="$(rabbit_node "$node")" RABBITMQ_NODE_PORT="$(amqp_port "$node")" \
        RABBITMQ_DIST_PORT="$(dist_port "$node")" RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
        RABBITMQ_PID_FILE="$dir/rabbit.pid" "$@"
}
ctl() { # node rabbitmqctl-arguments...
    local node=$1
    shift
    # Without the lock's descriptor (an orphaned rabbitmqctl VM would hold the lock for the next up or down),
    # and killed if it outlives its bound.
    timeout -k 10 60 rabbitmqctl -n "$(rabbit_node "$node")" "$@" 9>&-
}
rabbit_answers() { port_open "$(amqp_port "$1")" && ctl "$1" -q status >/dev/null 2>&1; }
rabbit_running_nodes() { # the running members as node 1 sees them, one per line
    ctl "$1" -q cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin).get("running_nodes", [])))'
}
rabbit_member() { rabbit_running_nodes 1 | grep -x "$(rabbit_node "$1")" >/dev/null; }

rabbit_init() {
    local node=$1 dir
    dir=$(rabbit_dir "$node")
    mkdir -p "$dir/mnesia" "$dir/log"
    echo '[].' >"$dir/enabled_plugins"
    # Loopback only; a small disk limit (the machine is shared: a full-disk alarm would block publishers);
    # max_message_size as scripts/services.sh sets it on the single node (decision 0015). Quorum queues
    # take their members from the running nodes: three here (decision 0025). A node cut off from the other
    # two pauses (pause_minority; the default `ignore` would let both sides go on: a split brain), and a
    # peer that stops answering counts as gone after net_ticktime 10 s (default 60) (decision 0025).
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$(amqp_port "$node")
disk_free_limit.absolute = 50MB
max_message_size = 16777216
vm_memory_high_watermark.absolute = 1GB
cluster_partition_handling = pause_minority
net_ticktime = 10
CONF
    chown -R rabbitmq:rabbitmq "$dir"
}

# CLUSTER_CGROUPS=1: each RabbitMQ node starts in a cgroup v2 of its own, rabbit_cgroup N (created here),
# so that a firewall can match its sockets, outgoing ones included (`nft ... socket cgroupv2`): the fault
# suite partitions a node that way (faults/run.sh --cluster, decision 0027).
rabbit_cgroup() { # node: the cgroup's directory, or nothing without CLUSTER_CGROUPS=1 or a cgroup v2 mount
    [ "${CLUSTER_CGROUPS:-0}" = 1 ] || return 0
    local mount
    mount=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n 1)
    [ -n "$mount" ] && [ -w "$mount" ] || return 0
    echo "$mount/seat-cluster-$BASE-rabbit$1"
}

rabbit_start() {
    local node=$1 cgroup
    [ -e "$(rabbit_dir "$node")/rabbitmq.conf" ] || rabbit_init "$node"
    # epmd forgets a killed node only once its socket closes; a start before that fails "name in use".
    wait_for 30 bash -c "! epmd -names 2>/dev/null | grep -q '^name $(rabbit_node "$node" | cut -d@ -f1) '" || true
    cgroup=$(rabbit_cgroup "$node")
    if [ -n "$cgroup" ]; then
        mkdir -p "$cgroup"
        # epmd (the machine's Erlang name server) must not be born inside a node's cgroup: cutting that node
        # would cut every node's name lookups.
        epmd -daemon 9>&- || true
    fi
    (
        if [ -n "$cgroup" ]; then echo "$BASHPID" >"$cgroup/cgroup.procs"; fi
        rabbit_env "$node" rabbitmq-server -detached
    ) >>"$(rabbit_dir "$node")/start.log" 2>&1 9>&- || true
}

rabbit_await() {
    local node=$1
    if ! { wait_for "$RABBIT_WAIT" port_open "$(amqp_port "$node")" && ctl "$node" -q await_startup >/dev/null 2>&1; }; then
        tail -n 20 "$(rabbit_dir "$node")/start.log" "$(rabbit_dir "$node")"/log/*.log >&2 2>/dev/null || true
        fail "RabbitMQ node $(rabbit_node "$node") did not start within ${RABBIT_WAIT}s; see $(rabbit_dir "$node")/log"
    fi
}

# Whether node N already belongs to node 1's cluster (its own view: node 1 among its disc nodes), running
# or not yet: a node restarting from its data rejoins by itself, and must not be reset (its quorum queue
# replicas would be lost).
rabbit_clustered() {
    ctl "$1" -q cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in json.load(sys.stdin).get("disk_nodes", []) else 1)' \
            "$(rabbit_node 1)"
}

# Node N (2 or 3) joins node 1's cluster unless it is already a member.
rabbit_join() {
    local node=$1
    rabbit_member "$node" && return 0
    if rabbit_clustered "$node"; then
        wait_for 60 rabbit_member "$node" || fail "$(rabbit_node "$node") belongs to the cluster but does not run in it"
        return 0
    fi
    say rabbitmq "$(rabbit_node "$node") joins $(rabbit_node 1)"
    ctl "$node" -q stop_app >/dev/null 2>&1
    ctl "$node" -q reset >/dev/null 2>&1
    ctl "$node" -q join_cluster "$(rabbit_node 1)" >/dev/null 2>&1 || fail "$(rabbit_node "$node") could not join the cluster"
    ctl "$node" -q start_app >/dev/null 2>&1
    wait_for 60 rabbit_member "$node" || fail "$(rabbit_node "$node") is not a running member after joining"
}

# The broker users of scripts/services.sh (same names, roles, passwords file), made through node 1: users
# and permissions are cluster-wide, so every node has them.
rabbit_users() {
    # A shell of its own: services.sh's read-only names must not meet this script's.
    bash -c '
        set -euo pipefail
        source "$1"
        node=$2
        ctl=$(type -P rabbitmqctl)
        rabbitmqctl() { timeout 60 "$ctl" -n "$node" "$@"; }
        if ! rabbitmqctl -q authenticate_user guest guest >/dev/null 2>&1; then
            rabbitmqctl -q add_user guest guest >/dev/null 2>&1 || rabbitmqctl -q change_password guest guest >/dev/null
            rabbitmqctl -q set_permissions -p / guest ".*" ".*" ".*" >/dev/null
        fi
        broker_users_up >/dev/null
    ' cluster-users "$ROOT/scripts/services.sh" "$(rabbit_node 1)" || fail "cannot set up the broker users"
}

rabbitmq_up() {
    local node started=()
    for node in "${NODES[@]}"; do
        if ! port_open "$(amqp_port "$node")"; then
            port_closed "$(dist_port "$node")" || fail "port $(dist_port "$node") is taken by something else"
            rabbit_start "$node"
            started+=("$node")
        fi
    done
    # All at once: a node restarting from its data waits for its former peers.
    for node in "${NODES[@]}"; do rabbit_await "$node"; done
    rabbit_join 2
    rabbit_join 3
    # Users are cluster-wide: made once (a node that comes back has them), checked with one call.
    if ! ctl 1 -q list_users 2>/dev/null | grep '^inventory-core' >/dev/null ||
        ! ctl 1 -q authenticate_user guest guest >/dev/null 2>&1; then
        rabbit_users
    fi
    local how=reused
    [ ${#started[@]} -eq 0 ] || how="started ${started[*]}"
    say rabbitmq "up ($how) amqp://guest:***@127.0.0.1:$(amqp_port 1),$(amqp_port 2),$(amqp_port 3), $(rabbit_running_nodes 1 | wc -l) running nodes"
}

rabbit_stop() {
    local node=$1 pidfile
    pidfile=$(rabbit_dir "$node")/rabbit.pid
    # `rabbitmqctl stop PIDFILE` waits for the pid file to appear: given one of a node that is not running,
    # its CLI lingered (past `timeout`, which kills only the wrapper) and stopped the node the next `up`
    # started, moments after its startup. Only a running node is stopped, and with its pid file only if it
    # has one.
    if pid_alive "$pidfile"; then
        ctl "$node" -q stop "$pidfile" >/dev/null 2>&1 || true
    elif port_open "$(amqp_port "$node")"; then
        ctl "$node" -q stop >/dev/null 2>&1 || true
    fi
    if pid_alive "$pidfile"; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
    wait_for 30 port_closed "$(amqp_port "$node")" || true
}

# MARK: - etcd

etcd_endpoints() {
    local node list=()
    for node in "${NODES[@]}"; do list+=("http://127.0.0.1:$(etcd_client_port "$node")"); done
    (IFS=,; echo "${list[*]}")
}
etcd_healthy() { ETCDCTL_API=3 etcdctl --endpoints="$(etcd_endpoints)" endpoint health >/dev/null 2>&1; }

etcd_start() {
    local node=$1 dir initial="" n
    dir=$CLUSTER_DIR/etcd$node
    mkdir -p "$dir"
    for n in "${NODES[@]}"; do initial+="${initial:+,}etcd$n=http://127.0.0.1:$(etcd_peer_port "$n")"; done
    setsid etcd --name "etcd$node" --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$(etcd_client_port "$node")" \
        --advertise-client-urls "http://127.0.0.1:$(etcd_client_port "$node")" \
        --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$node")" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$node")" \
        --initial-cluster "$initial" --initial-cluster-token "$SCOPE" --initial-cluster-state new \
        --quota-backend-bytes $((256 * 1024 * 1024)) \
        >>"$dir/etcd.log" 2>&1 </dev/null 9>&- &
    echo $! >"$dir/etcd.pid"
}

etcd_up() {
    local node started=()
    for node in "${NODES[@]}"; do
        if ! pid_alive "$CLUSTER_DIR/etcd$node/etcd.pid"; then
            port_closed "$(etcd_client_port "$node")" || fail "port $(etcd_client_port "$node") is taken by something else"
            etcd_start "$node"
            started+=("$node")
        fi
    done
    wait_for "$ETCD_WAIT" etcd_healthy || fail "etcd is not healthy within ${ETCD_WAIT}s; see $CLUSTER_DIR/etcd*/etcd.log"
    local how=reused
    [ ${#started[@]} -eq 0 ] || how="started ${started[*]}"
    say etcd "up ($how) $(etcd_endpoints)"
}

stop_pidfile() { # pidfile: TERM, then KILL after 20 s
    local pidfile=$1 pid
    pid_alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    wait_for 20 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
}

# MARK: - PostgreSQL under Patroni

patroni_config() {
    local node=$1 dir hosts="" n
    dir=$CLUSTER_DIR/pg$node
    for n in "${NODES[@]}"; do hosts+="${hosts:+, }127.0.0.1:$(etcd_client_port "$n")"; done
    # ttl 10, loop_wait 2, retry_timeout 4 (loop_wait + 2 * retry_timeout <= ttl): a dead primary's leader
    # key expires within 10 s and the synchronous standby takes over. synchronous_mode: Patroni promotes only
    # the synchronous standby; synchronous_commit on: a commit returns once the standby has flushed its WAL,
    # so a hold answered ok survives the primary (decision 0026). Not strict: a lone primary keeps serving.
    cat >"$dir/patroni.yml" <<YAML
scope: $SCOPE
name: pg$node
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(patroni_port "$node")
  connect_address: 127.0.0.1:$(patroni_port "$node")
etcd3:
  hosts: [$hosts]
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        synchronous_commit: "on"
        max_connections: 200
        shared_buffers: 64MB
        wal_log_hints: "on"
        wal_keep_size: 256MB
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
postgresql:
  listen: 127.0.0.1:$(pg_port "$node")
  connect_address: 127.0.0.1:$(pg_port "$node")
  data_dir: $dir/data
  bin_dir: $PG_BIN
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: $DB_USER
      password: $DB_PASSWORD
    replication:
      username: replicator
      password: $REPLICATION_PASSWORD
    rewind:
      username: $DB_USER
      password: $DB_PASSWORD
  parameters:
    unix_socket_directories: '$dir'
YAML
    chown -R postgres:postgres "$dir"
    chmod 600 "$dir/patroni.yml"
}

patroni_start() {
    local node=$1 dir
    dir=$CLUSTER_DIR/pg$node
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    [ -e "$dir/patroni.yml" ] || patroni_config "$node"
    # setpriv execs (no parent left behind): the pid file names Patroni itself.
    (cd / && HOME=/var/lib/postgresql exec setsid setpriv --reuid=postgres --regid=postgres --init-groups \
        patroni "$dir/patroni.yml") >>"$dir/patroni.log" 2>&1 </dev/null 9>&- &
    echo $! >"$dir/patroni.pid"
}

patroni_status() { # node path: the HTTP status of Patroni's REST path (200, 503, or 000 when down)
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(patroni_port "$1")$2" 2>/dev/null || true
}
pg_primary() { # the node number of the primary, or nothing
    local node
    for node in 1 2; do
        if [ "$(patroni_status "$node" /primary)" = 200 ]; then
            echo "$node"
            return 0
        fi
    done
    return 1
}
pg_ready() { # a primary that accepts connections, and a synchronous standby
    local primary standby
    primary=$(pg_primary) || return 1
    standby=$((3 - primary))
    [ "$(patroni_status "$standby" /sync)" = 200 ] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(pg_port "$primary")"
}
pg_psql() { # node psql-arguments...
    local node=$1
    shift
    PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -h 127.0.0.1 -p "$(pg_port "$node")" -U "$DB_USER" "$@"
}

postgres_up() {
    [ -n "$PG_BIN" ] || fail "PostgreSQL is not installed (/usr/lib/postgresql is empty)"
    local node started=()
    for node in 1 2; do
        if ! pid_alive "$CLUSTER_DIR/pg$node/patroni.pid"; then
            port_closed "$(pg_port "$node")" || fail "port $(pg_port "$node") is taken by something else"
            patroni_start "$node"
            started+=("$node")
        fi
    done
    # The first start bootstraps one member (initdb) and clones the other (pg_basebackup): tens of seconds.
    wait_for "$PG_WAIT" pg_ready ||
        fail "no primary with a synchronous standby within ${PG_WAIT}s; see $CLUSTER_DIR/pg*/patroni.log"
    local primary
    primary=$(pg_primary)
    if [ "$(pg_psql "$primary" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
        pg_psql "$primary" -d postgres -c "CREATE DATABASE $DATABASE" || fail "cannot create $DATABASE"
    fi
    local how=reused
    [ ${#started[@]} -eq 0 ] || how="started ${started[*]}"
    say postgresql "up ($how) primary pg$primary, synchronous standby pg$((3 - primary)): $(pg_url)"
}

pg_url() {
    echo "postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$(pg_port 1),127.0.0.1:$(pg_port 2)/$DATABASE?target_session_attrs=read-write"
}

# MARK: - Redis and Sentinel

redis_cli() { # port arguments...
    local port=$1
    shift
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}
redis_answers() { [ "$(redis_cli "$1" ping)" = PONG ]; }
sentinel_master() { # the master's "host port" as the first Sentinel that knows says, or nothing
    local node answer
    for node in "${NODES[@]}"; do
        answer=$(redis_cli "$(sentinel_port "$node")" sentinel get-master-addr-by-name "$SENTINEL_MASTER" | tr '\n' ' ')
        if [ -n "${answer// /}" ]; then
            echo "${answer% }"
            return 0
        fi
    done
    return 1
}
sentinel_master_alive() {
    local known
    known=$(sentinel_master) && redis_answers "${known#* }"
}
redis_replica_linked() { # port: a replica whose link to its master is up
    redis_cli "$1" info replication | tr -d '\r' | grep -qx 'master_link_status:up'
}
sentinels_agree() { # every Sentinel knows the master, sees the other two Sentinels and the replica
    local node
    for node in "${NODES[@]}"; do
        local info
        info=$(redis_cli "$(sentinel_port "$node")" info sentinel | tr -d '\r') || return 1
        echo "$info" | grep -q "name=$SENTINEL_MASTER,status=ok,.*slaves=1,sentinels=3" || return 1
    done
}

redis_start() { # node [master-port]
    local node=$1 master=${2:-} dir
    dir=$CLUSTER_DIR/redis$node
    mkdir -p "$dir"
    local args=(--daemonize yes --bind 127.0.0.1 --port "$(redis_port "$node")" --save '' --appendonly no
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log")
    if [ -n "$master" ]; then args+=(--replicaof 127.0.0.1 "$master"); fi
    redis-server "${args[@]}" 9>&- || fail "redis-server $node did not start; see $dir/redis.log"
}

sentinel_start() {
    local node=$1 dir
    dir=$CLUSTER_DIR/sentinel$node
    mkdir -p "$dir"
    # The Sentinel rewrites its own file (the master it follows, its peers): written only when new.
    if [ ! -s "$dir/sentinel.conf" ]; then
        cat >"$dir/sentinel.conf" <<CONF
bind 127.0.0.1
port $(sentinel_port "$node")
daemonize yes
dir $dir
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $(redis_port 1) 2
sentinel down-after-milliseconds $SENTINEL_MASTER 2000
sentinel failover-timeout $SENTINEL_MASTER 10000
sentinel parallel-syncs $SENTINEL_MASTER 1
CONF
    fi
    redis-sentinel "$dir/sentinel.conf" 9>&- || fail "redis-sentinel $node did not start; see $dir/sentinel.log"
}

redis_up() {
    local node started=() master_port=""
    # Nothing runs: a fresh start, node 1 the master, the Sentinels' memory of an older topology dropped.
    local any=false
    for node in "${NODES[@]}"; do
        if redis_answers "$(sentinel_port "$node")"; then any=true; fi
    done
    for node in 1 2; do
        if redis_answers "$(redis_port "$node")"; then any=true; fi
    done
    if ! $any; then rm -f "$CLUSTER_DIR"/sentinel*/sentinel.conf; fi
    # The master the Sentinels follow, if they run; else node 1. When they name a dead master while the
    # replica lives, they are about to fail over: wait for that (bounded) before starting the dead node
    # again, or it would come back as a replica of a replica.
    local known data_alive=false
    if redis_answers "$(redis_port 1)" || redis_answers "$(redis_port 2)"; then data_alive=true; fi
    if known=$(sentinel_master); then master_port=${known#* }; fi
    if [ -n "$master_port" ] && $data_alive && ! redis_answers "$master_port"; then
        say redis "the Sentinels name a master that is down: waiting for their failover"
        wait_for "$REDIS_WAIT" sentinel_master_alive || true
        if known=$(sentinel_master); then master_port=${known#* }; fi
    fi
    [ -n "$master_port" ] || master_port=$(redis_port 1)
    for node in 1 2; do
        if ! redis_answers "$(redis_port "$node")"; then
            if [ "$(redis_port "$node")" = "$master_port" ] && ! $data_alive; then
                redis_start "$node"
            else
                # A returning node comes back as a replica of the current master (the Sentinels would
                # make it one anyway; an empty master would otherwise wipe its replica).
                local replica_of=$master_port
                if [ "$(redis_port "$node")" = "$master_port" ]; then replica_of=$(redis_port $((3 - node))); fi
                redis_start "$node" "$replica_of"
            fi
            started+=("redis$node")
        fi
    done
    for node in 1 2; do
        wait_for "$REDIS_WAIT" redis_answers "$(redis_port "$node")" ||
            fail "Redis $(redis_port "$node") did not answer within ${REDIS_WAIT}s"
    done
    for node in "${NODES[@]}"; do
        if ! redis_answers "$(sentinel_port "$node")"; then
            sentinel_start "$node"
            started+=("sentinel$node")
        fi
    done
    # Ready: the replica is linked, and all three Sentinels agree on the master and see each other.
    wait_for "$REDIS_WAIT" sentinels_agree ||
        fail "the Sentinels do not agree on a master with one replica within ${REDIS_WAIT}s; see $CLUSTER_DIR/sentinel*/"
    known=$(sentinel_master)
    local replica=1
    [ "${known#* }" != "$(redis_port 1)" ] || replica=2
    wait_for "$REDIS_WAIT" redis_replica_linked "$(redis_port "$replica")" ||
        fail "the Redis replica on $(redis_port "$replica") is not linked to its master within ${REDIS_WAIT}s"
    local how=reused
    [ ${#started[@]} -eq 0 ] || how="started ${started[*]}"
    say redis "up ($how) master ${known/ /:}, Sentinels $(sentinel_port 1)-$(sentinel_port 3)"
}

redis_stop_port() { # port pidfile
    redis_cli "$1" shutdown nosave >/dev/null 2>&1 || true
    stop_pidfile "$2"
}

# MARK: - Commands

up() {
    mkdir -p "$CLUSTER_DIR"
    chmod 755 "$CLUSTER_DIR"
    install_packages
    etcd_up
    postgres_up
    redis_up
    rabbitmq_up
}

status() {
    local down=0 node
    local etcd_line="" pg_line="" redis_line="" rabbit_line=""
    for node in "${NODES[@]}"; do
        if ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$(etcd_client_port "$node")" endpoint health >/dev/null 2>&1; then
            etcd_line+=" etcd$node:up"
        else
            etcd_line+=" etcd$node:down" down=1
        fi
    done
    for node in 1 2; do
        if [ "$(patroni_status "$node" /primary)" = 200 ]; then
            pg_line+=" pg$node:primary"
        elif [ "$(patroni_status "$node" /sync)" = 200 ]; then
            pg_line+=" pg$node:sync-standby"
        elif [ "$(patroni_status "$node" /replica)" = 200 ]; then
            pg_line+=" pg$node:replica"
        else
            pg_line+=" pg$node:down" down=1
        fi
    done
    for node in 1 2; do
        local role
        role=$(redis_cli "$(redis_port "$node")" role | head -n 1 || true)
        redis_line+=" $(redis_port "$node"):${role:-down}"
        [ -n "$role" ] || down=1
    done
    for node in "${NODES[@]}"; do
        if redis_answers "$(sentinel_port "$node")"; then redis_line+=" sentinel$node:up"; else redis_line+=" sentinel$node:down" down=1; fi
    done
    local running
    running=$(rabbit_running_nodes 1 2>/dev/null || true)
    [ -n "$running" ] || running=$(rabbit_running_nodes 2 2>/dev/null || true)
    for node in "${NODES[@]}"; do
        if port_open "$(amqp_port "$node")" && grep -qx "$(rabbit_node "$node")" <<<"$running"; then
            rabbit_line+=" $(rabbit_node "$node"):running"
        elif port_open "$(amqp_port "$node")"; then
            rabbit_line+=" $(rabbit_node "$node"):up,not-clustered" down=1
        else
            rabbit_line+=" $(rabbit_node "$node"):down" down=1
        fi
    done
    say etcd "${etcd_line# }"
    say postgresql "${pg_line# }"
    say redis "${redis_line# }"
    say rabbitmq "${rabbit_line# }"
    return "$down"
}

down() {
    local node
    # RabbitMQ first (the heaviest), all three together so that none waits for the others to leave.
    for node in "${NODES[@]}"; do rabbit_stop "$node" & done
    wait
    for node in "${NODES[@]}"; do
        redis_stop_port "$(sentinel_port "$node")" "$CLUSTER_DIR/sentinel$node/sentinel.pid"
    done
    for node in 1 2; do redis_stop_port "$(redis_port "$node")" "$CLUSTER_DIR/redis$node/redis.pid"; done
    # Patroni stops its PostgreSQL on SIGTERM (a fast shutdown).
    for node in 1 2; do stop_pidfile "$CLUSTER_DIR/pg$node/patroni.pid"; done
    for node in 1 2; do
        if [ -s "$CLUSTER_DIR/pg$node/data/postmaster.pid" ]; then
            (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/pg$node/data" -m fast -w -t 30 stop) \
                >/dev/null 2>&1 || true
        fi
    done
    for node in "${NODES[@]}"; do stop_pidfile "$CLUSTER_DIR/etcd$node/etcd.pid"; done
    say cluster "stopped (state kept in $CLUSTER_DIR)"
    if [ "${1:-}" = --purge ]; then
        rm -rf "${CLUSTER_DIR:?}"/{rabbit,etcd,pg,redis,sentinel}[0-9]
        for node in "${NODES[@]}"; do
            local cgroup
            cgroup=$(CLUSTER_CGROUPS=1 rabbit_cgroup "$node")
            if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then rmdir "$cgroup" 2>/dev/null || true; fi
        done
        say cluster "state deleted"
    fi
}

# The connection variables of the services for this topology.
print_env() {
    echo "DATABASE_URL='$(pg_url)'"
    echo "RABBITMQ_URL='amqp://guest:guest@127.0.0.1:$(amqp_port 1),127.0.0.1:$(amqp_port 2),127.0.0.1:$(amqp_port 3)/?queue_type=quorum'"
    echo "REDIS_URL='redis-sentinel://127.0.0.1:$(sentinel_port 1),127.0.0.1:$(sentinel_port 2),127.0.0.1:$(sentinel_port 3)/$SENTINEL_MASTER'"
}

main() {
    mkdir -p "$CLUSTER_DIR"
    # One up or down at a time; the servers started here must not inherit the lock (9>&- on each start).
    exec 9>>"$CLUSTER_DIR/lock"
    case "${1:-}" in
    up | down) flock -w 600 9 || fail "another cluster.sh is still running" ;;
    esac
    case "${1:-}" in
    up) up ;;
    status) status ;;
    down) down "${2:-}" ;;
    env) print_env ;;
    *)
        echo "usage: $0 up | status | down [--purge] | env" >&2
        exit 2
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
