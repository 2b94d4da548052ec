#!/usr/bin/env bash
# The fault suite (issues 7, 13): a contended workload against two `inventory-rpc serve` processes, each in
# a network namespace of its own, and the REST facade, on a PRIVATE PostgreSQL / Redis / RabbitMQ that
# this script starts, breaks at random moments (processes killed, services restarted or crashed, links
# partitioned, two faults at once), and stops; then the history checker. Exit 0 when no anomaly of any
# kind was found.
#
#   faults/run.sh [--duration SECONDS] [--seed N] [--control] [--gap MIN-MAX] [--out DIR] [--kinds K,K,...]
#                 [--amqp-clients N] [--http-clients N] [--no-faults] [--bin DIR] [--cluster]
#
#   --cluster    the same workload and checks on a PRIVATE cluster (scripts/cluster.sh, issue 18): three
#                RabbitMQ nodes, PostgreSQL under Patroni, Redis with Sentinels, started fresh with
#                CLUSTER_PORT_BASE (default 6600) and CLUSTER_DIR (default /var/tmp/seat-inventory-cluster-<base>),
#                `down --purge` on exit; the cores on loopback (no namespaces); the cluster's fault kinds
#                (kill-rabbit-node, kill-pg-primary, kill-redis-master, partition-redis-master,
#                partition-rabbit-node) beside the process kills (RELIABILITY.md, "The fault suite on a cluster")
#   --duration   seconds of load with faults (default 60); the checks add about half a minute
#   --seed       seeds the fault order, each fault's choices (core, link, direction, length), the pauses
#                between faults and the clients' choices (default: random, printed)
#   --control    the control run: builds the core with -DINVENTORY_CONTROL_UNSAFE_CLAIM (scratch path
#                .build-control), turns the seat guard trigger off in the private database, and exits 0
#                only if the checker DOES find double holds
#   --gap        seconds between one fault's recovery and the next fault (default 1-4; 0-0 for the soak:
#                under a second)
#   --kinds      inject these kinds in this order, round after round (default: every kind, cheap ones
#                twice, in a seeded random order per round); RELIABILITY.md lists the kinds
#   --bin        use the binaries in DIR instead of building (the Swift test passes its own)
#
# FAULTS_CORE_DB_PARAMS: query parameters added to the cores' DATABASE_URL (to show what a setting does,
# e.g. `keepalives=0&tcp_user_timeout=0` turns the keepalives off and the relay's handover fails).
# Never touches the shared services on 5432 / 6379 / 5672. Ports: FAULTS_PORT_OFFSET (default 0) shifts
# all of PostgreSQL 5442, Redis 6392, RabbitMQ 5692 (distribution 25692), facade 3095, core ops 3096-3097,
# and the cores' namespaces (flt<offset>-core1, ...) and subnets (10.213.<offset + 1>.0/30, ...).
# Needs root, `ip` and `nft` (scripts/services.sh up installs them). RELIABILITY.md explains the faults,
# the checks and the results.
set -euo pipefail
cd "$(dirname "$0")/.."
readonly ROOT=$PWD

duration=60 seed=$(((RANDOM << 15) | RANDOM)) control=false gap=1-4 out="" amqp_clients=16 http_clients=6
inject=true bin="" kinds_arg="" cluster=false
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --control) control=true; shift ;;
    --gap) gap=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --amqp-clients) amqp_clients=$2; shift 2 ;;
    --http-clients) http_clients=$2; shift 2 ;;
    --no-faults) inject=false; shift ;;
    --bin) bin=$2; shift 2 ;;
    --kinds) kinds_arg=$2; shift 2 ;;
    --cluster) cluster=true; shift ;;
    -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
gap_min=${gap%-*} gap_max=${gap#*-}

# Without FAULTS_PORT_OFFSET, the first offset (0, 10, ... 90) whose ports are all free: two runs at once
# (two worktrees' test suites) each get their own stack.
ports_free_at() {
    local port
    for port in $((5442 + $1)) $((6392 + $1)) $((5692 + $1)) $((25692 + $1)) $((3095 + $1)) $((3096 + $1)) $((3097 + $1)) $((3098 + $1)); do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
    done
}
offset=${FAULTS_PORT_OFFSET:-}
if [ -z "$offset" ]; then
    for candidate in 0 10 20 30 40 50 60 70 80 90; do
        if ports_free_at "$candidate"; then offset=$candidate; break; fi
    done
    [ -n "$offset" ] || { echo "run.sh: no free port range (FAULTS_PORT_OFFSET 0-90 all taken)" >&2; exit 1; }
fi
export FAULTS_PG_PORT=$((5442 + offset)) FAULTS_REDIS_PORT=$((6392 + offset)) FAULTS_AMQP_PORT=$((5692 + offset))
export FAULTS_DIST_PORT=$((25692 + offset))
readonly FACADE_PORT=$((3095 + offset)) OPS_PORT_BASE=$((3096 + offset)) FACADE_OPS_PORT=$((3098 + offset))
# Authentication on, as by default: the facade verifies, and the workload's HTTP users sign with, a
# secret made for this run.
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export JWT_SECRET
readonly HOLD_TTL=3 EXPIRY_INTERVAL=1 SHOWTIME_PERIOD=5 SEATS=48
# The cores' AMQP heartbeat (seconds): a broker link cut for longer than two of these is declared dead by
# both ends. The long partitions last longer than that, and longer than the PostgreSQL keepalives'
# ~5 s (PostgresConnection.defaultKeepalives).
readonly HEARTBEAT=5 SHORT_CUT=2-3 LONG_CUT=11-12
readonly NET_TAG=$offset
if $cluster; then
    $control && { echo "run.sh: --control is for the single-node run" >&2; exit 2; }
    export CLUSTER_PORT_BASE=${CLUSTER_PORT_BASE:-6600}
    export CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/seat-inventory-cluster-$CLUSTER_PORT_BASE}
    export CLUSTER_CGROUPS=1 # each RabbitMQ node in a cgroup of its own: partition-rabbit-node matches its sockets
fi

FAULTS_DIR=$(mktemp -d /tmp/faults.XXXXXX)
chmod 755 "$FAULTS_DIR"
export FAULTS_DIR
# shellcheck source=faults/stack.sh
source "$ROOT/faults/stack.sh"
# shellcheck source=faults/net.sh
source "$ROOT/faults/net.sh"
if $cluster; then # the harness's own queries go to the cluster's primary, wherever it is
    psql_() { PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
fi
trap 'net_down; rm -rf "$FAULTS_DIR"' EXIT # until the full clean-up below takes over
net_available || { log "needs root, ip and nft (scripts/services.sh up installs iproute2 and nftables)"; exit 1; }

suffix=""
if $control; then suffix=-control; fi
[ -n "$out" ] || out=$ROOT/.build/faults/$(date +%Y%m%d-%H%M%S)-seed$seed$suffix
mkdir -p "$out"
out=$(cd "$out" && pwd)
readonly HISTORY=$out/history.jsonl FAULTS_LOG=$out/faults.jsonl
: >"$FAULTS_LOG"
RANDOM=$seed

# The harness, the clients and the facade use loopback; each core reaches the services through its veth.
# On the cluster: the URLs of `scripts/cluster.sh env` (several hosts each), for everyone.
if $cluster; then
    eval "$("$ROOT/scripts/cluster.sh" env)"
    CLUSTER_REDIS_URL=$REDIS_URL
    # Every AMQP client of the run (cores, facade, workload) with the cores' heartbeat: a connection to a
    # node that was cut off is declared dead within two intervals, and the client moves to another node.
    RABBITMQ_URL="$RABBITMQ_URL&heartbeat=$HEARTBEAT"
else
    DATABASE_URL="postgresql://postgres@127.0.0.1:$FAULTS_PG_PORT/inventory_faults"
    RABBITMQ_URL="amqp://guest:guest@127.0.0.1:$FAULTS_AMQP_PORT"
fi
readonly DATABASE_URL RABBITMQ_URL
# Every process of the run logs in as guest on the run's private broker: the core's table grants guest
# what the facade's broker user has (README, "Broker users"; the core warns at start).
readonly RPC_PERMISSIONS="inventory-admin=*,act-for-users,admin inventory-facade=*,act-for-users,admin inventory-gateway=availability,ping inventory-orders=hold,release,purchase,hold.get,availability,ping,act-for-users guest=*,act-for-users,admin"

# MARK: Processes of the service (ours: started, killed and restarted only by this script)

declare -A PIDS=() OPS=() HOST=()
CORES=(core1 core2)
OPS[core1]=$OPS_PORT_BASE
OPS[core2]=$((OPS_PORT_BASE + 1))
OPS[facade]=$FACADE_PORT
HOST[facade]=127.0.0.1
workload_pid=""

# The cores' namespaces, before the services start: those listen on the host-side addresses.
# On the cluster the cores run on loopback like every node (decision 0027): the faults there are the nodes'.
net_index=0
for name in "${CORES[@]}"; do
    net_index=$((net_index + 1))
    if $cluster; then HOST[$name]=127.0.0.1; continue; fi
    net_add "$name" "$net_index"
    HOST[$name]=${NS_ADDR[$name]}
done
FAULTS_LISTEN="" FAULTS_PEERS=""
for name in "${CORES[@]}"; do
    $cluster && break
    FAULTS_LISTEN+="${FAULTS_LISTEN:+ }${HOST_ADDR[$name]}" FAULTS_PEERS+="${FAULTS_PEERS:+ }${NS_ADDR[$name]}"
done
export FAULTS_LISTEN FAULTS_PEERS

start_process() {
    local name=$1
    # From $out: the services read .env files in their working directory, and the repository's are not ours.
    if [ "$name" = facade ]; then
        (cd "$out" && exec setsid env RABBITMQ_URL="$RABBITMQ_URL" PORT="$FACADE_PORT" RPC_TIMEOUT_MS=2500 \
            AUTH_MODE=jwt FACADE_OPS_PORT="$FACADE_OPS_PORT" RATE_LIMIT_ENABLED=false \
            LOG_LEVEL=info CORS_ORIGIN='*' "$bin/http-facade" >>"$out/facade.log" 2>&1) &
    elif $cluster; then
        # application_name: the harness finds a core's sessions by it (commits_since).
        (cd "$out" && exec setsid env \
            DATABASE_URL="$DATABASE_URL&application_name=flt-$name${FAULTS_CORE_DB_PARAMS:+&$FAULTS_CORE_DB_PARAMS}" \
            REDIS_URL="$CLUSTER_REDIS_URL" RABBITMQ_URL="$RABBITMQ_URL" \
            HOLD_TTL_SECONDS=$HOLD_TTL EXPIRY_INTERVAL_SECONDS=$EXPIRY_INTERVAL OPS_PORT="${OPS[$name]}" WORKERS=4 \
            OPS_BIND=127.0.0.1 RPC_PERMISSIONS="$RPC_PERMISSIONS" LOG_LEVEL=info "$bin/inventory-rpc" serve >>"$out/$name.log" 2>&1) &
    else
        local via=${HOST_ADDR[$name]}
        (cd "$out" && exec ip netns exec "${NETNS[$name]}" setsid env \
            DATABASE_URL="postgresql://postgres@$via:$FAULTS_PG_PORT/inventory_faults${FAULTS_CORE_DB_PARAMS:+?$FAULTS_CORE_DB_PARAMS}" \
            REDIS_URL="redis://$via:$FAULTS_REDIS_PORT" \
            RABBITMQ_URL="amqp://guest:guest@$via:$FAULTS_AMQP_PORT?heartbeat=$HEARTBEAT" \
            HOLD_TTL_SECONDS=$HOLD_TTL EXPIRY_INTERVAL_SECONDS=$EXPIRY_INTERVAL OPS_PORT="${OPS[$name]}" WORKERS=4 \
            OPS_BIND="${NS_ADDR[$name]}" RPC_PERMISSIONS="$RPC_PERMISSIONS" LOG_LEVEL=info "$bin/inventory-rpc" serve >>"$out/$name.log" 2>&1) &
    fi
    PIDS[$name]=$!
}

alive() { # pid: running (not a zombie)
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null || true)
    [ -n "$state" ] && [ "${state:0:1}" != Z ]
}

kill9() {
    local name=$1 pid=${PIDS[$1]}
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

ready() { curl -sf -m 1 -o /dev/null "http://${HOST[$1]}:${OPS[$1]}/readyz"; }

all_names() { echo "${CORES[@]}" facade; }

# A process that died without being killed by us is an anomaly: record it, restart it, go on.
check_crashes() {
    local name
    for name in $(all_names); do
        if ! alive "${PIDS[$name]}"; then
            local code=0
            wait "${PIDS[$name]}" 2>/dev/null || code=$?
            log "$name exited on its own (status $code); restarting it"
            printf '{"kind":"crash","target":"%s","startMs":%s,"detail":"exit status %s; see %s.log"}\n' \
                "$name" "$(now_ms)" "$code" "$name" >>"$FAULTS_LOG"
            start_process "$name"
        fi
    done
}

# Waits (up to 60 s) until every process answers /readyz; prints `"name":ms,...` and the not-ready list.
READY_JSON="" NOT_READY_JSON=""
wait_all_ready() {
    local since=$1 name pending deadline=$((SECONDS + 60))
    declare -A at=()
    while :; do
        pending=0
        for name in $(all_names); do
            [ -n "${at[$name]:-}" ] && continue
            if ready "$name"; then at[$name]=$(($(now_ms) - since)); else pending=1; fi
        done
        [ $pending = 0 ] || [ $SECONDS -ge $deadline ] && break
        sleep 0.05
    done
    READY_JSON="" NOT_READY_JSON=""
    for name in $(all_names); do
        if [ -n "${at[$name]:-}" ]; then
            READY_JSON+="${READY_JSON:+,}\"$name\":${at[$name]}"
        else
            NOT_READY_JSON+="${NOT_READY_JSON:+,}\"$name\""
        fi
    done
}

# In a double fault the first part's record waits for the second's (fault_double writes one record).
DEFER_RECORD=false DEFERRED=() READY_MEASURED=false
EXTRA_JSON=""
record_fault() { # kind target start return detail
    if $DEFER_RECORD; then
        DEFERRED=("$@")
        return
    fi
    # A cluster fault measured the processes' readiness itself (before the node's restore).
    if $READY_MEASURED; then READY_MEASURED=false; else wait_all_ready "$4"; fi
    printf '{"kind":"%s","target":"%s","startMs":%s,"returnMs":%s,"ready":{%s},"notReady":[%s],"detail":"%s"%s}\n' \
        "$1" "$2" "$3" "$4" "$READY_JSON" "$NOT_READY_JSON" "$5" "$EXTRA_JSON" >>"$FAULTS_LOG"
    EXTRA_JSON=""
    [ -z "$NOT_READY_JSON" ] || log "NOT READY after $1: $NOT_READY_JSON"
}

# The core whose relay holds the outbox leadership (a session advisory lock): its backend's client
# address is that core's namespace address.
relay_leader() {
    local address
    address=$(psql_ -tAc "SELECT host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = x'696E765F'::int AND l.objid = x'6F757462'::int
        LIMIT 1" 2>/dev/null || true)
    [ -n "$address" ] || return 1
    name_of_address "$address"
}

unpublished() { psql_ -tAc 'SELECT count(*) FROM outbox WHERE published_at IS NULL' 2>/dev/null || echo "?"; }

# MARK: Faults

# Random draws set variables, never print: bash reseeds $RANDOM in every subshell, so a draw inside
# $(...) would not follow --seed.
random_core() { CORE=${CORES[RANDOM % ${#CORES[@]}]}; } # sets CORE

fault_kill_core() {
    local name start back
    random_core
    name=$CORE
    start=$(now_ms)
    kill9 "$name"
    sleep "0.$((RANDOM % 8 + 2))"
    start_process "$name"
    back=$(now_ms)
    record_fault kill-core "$name" "$start" "$back" "kill -9 at a random moment under load"
}

# Write pipelines (BEGIN; inventory_x(...); COMMIT; notify) of this core that the server finished after
# `since`: with the core frozen since then, each is a commit whose answer nobody read. Its backends are
# the sessions from its namespace's address.
commits_since() { # name since_ms
    local sessions="client_addr = '${NS_ADDR[$1]:-}'"
    if $cluster; then sessions="application_name = 'flt-$1'"; fi
    psql_ -tAc "SELECT count(*) FROM pg_stat_activity WHERE $sessions AND state = 'idle'
        AND query LIKE '%pg_notify%' AND state_change > to_timestamp($2 / 1000.0)" 2>/dev/null || echo "?"
}

# Between the database commit and the reply: SIGSTOP freezes the core with its pipelines on the wire and
# the server commits them. If none of its backends finished a write after the freeze, SIGCONT and try again
# a moment later (up to 20 times); then kill -9: each such write committed and its answer was never read.
fault_kill_core_after_commit() {
    local name start back pid committed=0 frozen tries=0
    random_core
    name=$CORE
    pid=${PIDS[$name]}
    start=$(now_ms)
    while :; do
        frozen=$(now_ms)
        kill -STOP "$pid" 2>/dev/null || true
        sleep 0.1
        committed=$(commits_since "$name" "$frozen")
        tries=$((tries + 1))
        [ "$committed" = 0 ] && [ $tries -lt 20 ] || break
        kill -CONT "$pid" 2>/dev/null || true
        sleep "0.$((SRANDOM % 2 + 1))"
    done
    kill9 "$name"
    sleep 0.2
    start_process "$name"
    back=$(now_ms)
    record_fault kill-core-after-commit "$name" "$start" "$back" \
        "frozen (attempt $tries), killed with $committed write transactions committed and unanswered"
}

# Between the commit and the event's publication: freeze the relay leader, wait until the outbox has a
# row it has not published (the other core keeps committing), then kill -9 it; its successor (the other
# core's relay, once the dead session's advisory lock is gone) must publish what it left, once.
fault_kill_relay_unpublished() {
    local name start back waiting=0 rows=0
    random_core # drawn in every case, so that the sequence of draws does not depend on timing
    name=$(relay_leader) || name=$CORE
    start=$(now_ms)
    kill -STOP "${PIDS[$name]}" 2>/dev/null || true
    while [ $waiting -lt 60 ]; do
        rows=$(unpublished)
        [ "$rows" != 0 ] && [ "$rows" != "?" ] && break
        waiting=$((waiting + 1))
        sleep 0.05
    done
    kill9 "$name"
    sleep 0.2
    start_process "$name"
    back=$(now_ms)
    record_fault kill-relay-unpublished "$name" "$start" "$back" \
        "relay leader frozen, killed with $rows outbox rows committed and not marked published"
}

fault_kill_facade() {
    local start back
    start=$(now_ms)
    kill9 facade
    sleep 0.3
    start_process facade
    back=$(now_ms)
    record_fault kill-facade facade "$start" "$back" "kill -9 of the REST facade"
}

fault_rabbitmq_restart() {
    local start back
    start=$(now_ms)
    rabbit_stop
    rabbit_start || log "RabbitMQ did not come back in time"
    back=$(now_ms)
    record_fault rabbitmq-restart rabbitmq "$start" "$back" "rabbitmqctl stop, rabbitmq-server -detached"
}

fault_redis_flushall() {
    local start
    start=$(now_ms)
    redis_cli flushall >/dev/null
    record_fault redis-flushall redis "$start" "$(now_ms)" "FLUSHALL: every seat lock gone"
}

fault_redis_restart() {
    local start back
    start=$(now_ms)
    redis_stop
    sleep 1
    redis_start
    back=$(now_ms)
    record_fault redis-restart redis "$start" "$back" "shutdown nosave, 1 s down, started empty"
}

fault_redis_pause() {
    local start back pid
    pid=$(redis_pid)
    start=$(now_ms)
    kill -STOP "$pid"
    sleep $((HOLD_TTL + 1)).5
    kill -CONT "$pid"
    back=$(now_ms)
    record_fault redis-pause redis "$start" "$back" "SIGSTOP for $((HOLD_TTL + 1)).5 s (past the lock TTL), SIGCONT"
}

fault_postgres_restart() {
    local start back mode=$1
    start=$(now_ms)
    pg_stop "$mode"
    pg_start || log "PostgreSQL did not come back in time"
    back=$(now_ms)
    record_fault "postgres-$([ "$mode" = fast ] && echo restart || echo crash)" postgresql "$start" "$back" \
        "pg_ctl stop -m $mode, start"
}

fault_kill_rabbitmq() {
    local start back
    start=$(now_ms)
    rabbit_kill
    sleep 0.5
    rabbit_start || log "RabbitMQ did not come back in time"
    back=$(now_ms)
    record_fault kill-rabbitmq rabbitmq "$start" "$back" "kill -9 of the broker's Erlang VM, started again"
}

# MARK: Partitions (faults/net.sh): one core's link to one service, dropped in the core's namespace.

random_between() { # "MIN-MAX": sets BETWEEN to an integer in it
    local low=${1%-*} high=${1#*-}
    BETWEEN=$((low + RANDOM % (high - low + 1)))
}

# Draws a partition's parameters (in this shell, so the seed decides them): PART_NAME PART_DIRECTION PART_SECONDS.
draw_partition() {
    random_core
    PART_NAME=$CORE
    local directions=(both out in)
    PART_DIRECTION=${directions[RANDOM % 3]}
    if [ $((RANDOM % 4)) = 0 ]; then random_between "$LONG_CUT"; else random_between "$SHORT_CUT"; fi
    PART_SECONDS=$BETWEEN
}

describe_direction() { # direction service name
    case "$1" in
    both) echo "$3 <-/-> $2 (both ways)" ;;
    out) echo "$3 -/-> $2 (one way: $3's packets dropped)" ;;
    in) echo "$2 -/-> $3 (one way: $2's packets dropped)" ;;
    esac
}

# Cuts, waits, heals; prints "start return detail" (also run in the background by fault_double).
partition_body() { # service name direction seconds
    local start back
    start=$(now_ms)
    net_cut "$2" "$1" "$3"
    sleep "$4"
    net_heal "$2" "$1"
    back=$(now_ms)
    echo "$start $back $(describe_direction "$3" "$1" "$2") for $4 s"
}

fault_partition() { # service
    local line start back detail
    draw_partition
    line=$(partition_body "$1" "$PART_NAME" "$PART_DIRECTION" "$PART_SECONDS")
    read -r start back detail <<<"$line"
    record_fault "partition-$1" "$PART_NAME" "$start" "$back" "$detail"
}

# The relay leader's database link cut both ways until the other core holds the leadership (the dead
# session's advisory lock released by the server's keepalives, then taken by the other relay's retry),
# then healed. handoverMs: from the cut to the other core's lock.
fault_partition_relay_db() {
    local name start back now successor="" handover=-1
    random_core # drawn in every case, so that the sequence of draws does not depend on timing
    name=$(relay_leader) || name=$CORE
    start=$(now_ms)
    net_cut "$name" postgres both
    while [ $(($(now_ms) - start)) -lt 40000 ]; do
        successor=$(relay_leader || true)
        if [ -n "$successor" ] && [ "$successor" != "$name" ]; then
            handover=$(($(now_ms) - start))
            break
        fi
        sleep 0.1
    done
    sleep 1
    net_heal "$name" postgres
    back=$(now_ms)
    if [ "$handover" -ge 0 ]; then
        log "relay leadership passed from $name to $successor ${handover} ms after its database link was cut"
        EXTRA_JSON=",\"handoverMs\":$handover"
    else
        log "relay leadership did NOT pass on within 40 s of cutting $name's database link"
        EXTRA_JSON=",\"handoverMs\":null"
    fi
    record_fault partition-relay-db "$name" "$start" "$back" \
        "relay leader $name <-/-> postgres until ${successor:-no other core} held the leadership ($handover ms), healed 1 s later"
}

# MARK: Cluster faults (--cluster): one node of an engine killed or cut off; the engine's own failover must
# keep the service going without it. The node comes back afterwards (scripts/cluster.sh up: a RabbitMQ
# node rejoins, an old PostgreSQL primary or Redis master returns as a replica). Their records' returnMs is
# the fault's start: the service is expected back without the node, so recovery counts from the fault;
# rejoinMs is how long the node took to be back in its cluster.

readonly CB=${CLUSTER_PORT_BASE:-0}
cluster_() { "$ROOT/scripts/cluster.sh" "$@"; }
patroni_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$((CB + 3010 + $1))$2" 2>/dev/null || true; }
pg_primary_node() { # sets PRIMARY (1 or 2) or fails
    local node
    for node in 1 2; do
        if [ "$(patroni_code "$node" /primary)" = 200 ]; then PRIMARY=$node; return 0; fi
    done
    return 1
}
pg_node_psql() { # node psql-arguments...
    local node=$1
    shift
    PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $((CB + 10 + node)) -U postgres \
        -d inventory_db "$@"
}
sentinel_master_port() { # the master's port as the first Sentinel that answers says
    local node answer
    for node in 1 2 3; do
        answer=$(timeout 3 redis-cli -p $((CB + 21010 + node)) sentinel get-master-addr-by-name seat-inventory 2>/dev/null |
            tail -n 1) || true
        if [ -n "$answer" ]; then echo "$answer"; return 0; fi
    done
    return 1
}
# Before a node's restore: every process ready again (from since_ms), as record_fault would measure it.
measure_ready() { # since_ms
    wait_all_ready "$1"
    READY_MEASURED=true
}
# A hold committed after since_ms (bounded by seconds): the service works without the node.
hold_committed_after() { # since_ms seconds
    local deadline=$((SECONDS + $2))
    until [ "$(psql_ -tAc "SELECT count(*) FROM holds WHERE created_at > to_timestamp($1 / 1000.0)" 2>/dev/null)" -gt 0 ] \
        2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}
# The node back: cluster.sh up (which waits until the cluster is whole); sets REJOIN (ms since since_ms, or null).
cluster_restore() { # since_ms
    if cluster_ up >>"$out/cluster-up.log" 2>&1; then
        REJOIN=$(($(now_ms) - $1))
    else
        REJOIN=null
        log "scripts/cluster.sh up failed after the fault; see $out/cluster-up.log"
    fi
}

# The RabbitMQ node a core's first RPC worker is connected to (from its log; a random node if none yet).
fault_kill_rabbit_node() {
    local name port node start failover=""
    random_core
    name=$CORE
    node=$((RANDOM % 3 + 1)) # drawn in every case
    port=$(grep 'rpc-worker' "$out/$name.log" | sed -n 's/.*amqp.host=127.0.0.1:\([0-9]*\).*/\1/p' | tail -n 1)
    if [ -n "$port" ] && [ $((port - CB)) -ge 1 ] && [ $((port - CB)) -le 3 ]; then node=$((port - CB)); fi
    start=$(now_ms)
    kill -9 "$(cat "$CLUSTER_DIR/rabbit$node/rabbit.pid")" 2>/dev/null || true
    hold_committed_after "$start" 60 || failover=" (no hold committed within 60 s without it)"
    measure_ready "$start"
    cluster_restore "$start"
    EXTRA_JSON=",\"rejoinMs\":$REJOIN"
    record_fault kill-rabbit-node "rabbit$node" "$start" "$start" \
        "kill -9 of RabbitMQ node $node (AMQP $((CB + node)), $name's worker was on it)$failover, started again"
}

# kill -9 of Patroni and PostgreSQL of the primary: Patroni fails over to the synchronous standby. Just
# before the kill, the holds the primary has committed are listed (on it); once the standby has taken
# over, how many of those it has (holdsBefore, holdsAfter: the checker's failover-lost-hold).
fault_kill_pg_primary() {
    local start before=null after=null other deadline detail
    start=$(now_ms)
    if ! pg_primary_node; then
        log "no PostgreSQL primary to kill"
        record_fault kill-pg-primary none "$start" "$start" "no primary found"
        return
    fi
    other=$((3 - PRIMARY))
    if pg_node_psql "$PRIMARY" -c "\\copy (SELECT hold_id FROM holds) TO '$FAULTS_DIR/holds-before'" 2>/dev/null; then
        before=$(wc -l <"$FAULTS_DIR/holds-before")
    fi
    start=$(now_ms)
    kill -9 "$(cat "$CLUSTER_DIR/pg$PRIMARY/patroni.pid")" "$(head -n 1 "$CLUSTER_DIR/pg$PRIMARY/data/postmaster.pid")" \
        2>/dev/null || true
    deadline=$((SECONDS + 60))
    until [ "$(patroni_code "$other" /primary)" = 200 ]; do
        [ $SECONDS -lt $deadline ] || break
        sleep 0.2
    done
    local promoted=$(($(now_ms) - start))
    # Read on the new primary (a few tries: it may still be finishing its promotion).
    local tries=0
    while [ "$before" != null ] && [ $tries -lt 20 ]; do
        tries=$((tries + 1))
        after=$(pg_node_psql "$other" -tA 2>>"$out/failover-read.log" <<SQL || true
\\set ON_ERROR_STOP 1
CREATE TEMP TABLE holds_before (hold_id text);
\\copy holds_before FROM '$FAULTS_DIR/holds-before'
SELECT count(*) FROM holds_before b JOIN holds h ON h.hold_id::text = b.hold_id;
SQL
        )
        after=$(echo "$after" | tail -n 1)
        [[ "$after" =~ ^[0-9]+$ ]] && break
        after=null
        sleep 0.5
    done
    detail="kill -9 of Patroni and PostgreSQL on the primary pg$PRIMARY; pg$other primary after $promoted ms"
    hold_committed_after "$start" 60 || detail+=" (no hold committed within 60 s)"
    measure_ready "$start"
    cluster_restore "$start"
    EXTRA_JSON=",\"rejoinMs\":$REJOIN,\"holdsBefore\":$before,\"holdsAfter\":$after"
    record_fault kill-pg-primary "pg$PRIMARY" "$start" "$start" "$detail; $after of $before holds on it; back as a replica"
}

# kill -9 of the Redis master: the Sentinels promote the replica.
fault_kill_redis_master() {
    local start master pid deadline detail
    start=$(now_ms)
    master=$(sentinel_master_port) || master=""
    pid=$(timeout 3 redis-cli -p "${master:-0}" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p') || true
    if [ -z "$pid" ]; then
        log "no Redis master to kill"
        record_fault kill-redis-master none "$start" "$start" "no master found"
        return
    fi
    start=$(now_ms)
    kill -9 "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 60))
    until [ "$(sentinel_master_port || true)" != "$master" ]; do
        [ $SECONDS -lt $deadline ] || break
        sleep 0.2
    done
    detail="kill -9 of the Redis master ($master); Sentinels named $(sentinel_master_port || echo none) after $(($(now_ms) - start)) ms"
    hold_committed_after "$start" 60 || detail+=" (no hold committed within 60 s)"
    measure_ready "$start"
    cluster_restore "$start"
    EXTRA_JSON=",\"rejoinMs\":$REJOIN"
    record_fault kill-redis-master "redis:$master" "$start" "$start" "$detail; back as a replica"
}

# Partitions on one machine: nftables rules on loopback in a table of this run (flt_cluster_<base>), one
# node's ports dropped both ways. A node's OUTGOING connections leave from ephemeral ports, which a port
# match misses; the Redis master makes none (replicas and Sentinels connect to it), so its port is the
# whole of its traffic. A RabbitMQ node does connect out (Erlang distribution to its peers): its sockets
# are matched by their cgroup (cluster.sh starts each node in a cgroup of its own when CLUSTER_CGROUPS=1).
readonly NFT_TABLE=flt_cluster_$CB
nft_cluster_up() {
    nft -f - <<NFT
table inet $NFT_TABLE {
    chain out { type filter hook output priority 0; policy accept; }
}
NFT
}
nft_cluster_down() { nft delete table inet "$NFT_TABLE" 2>/dev/null || true; }

# The Redis master cut from everyone (replica, Sentinels, cores) for PART_SECONDS: the Sentinels promote
# the replica; once healed, they turn the old master into its replica.
fault_partition_redis_master() {
    local start back master seconds deadline detail
    random_between 8-12
    seconds=$BETWEEN
    master=$(sentinel_master_port) || { log "no Redis master to cut"; return; }
    start=$(now_ms)
    nft add rule inet "$NFT_TABLE" out oifname lo tcp dport "$master" drop
    nft add rule inet "$NFT_TABLE" out oifname lo tcp sport "$master" drop
    deadline=$((SECONDS + seconds))
    until [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    detail="Redis master $master cut off both ways for $seconds s; Sentinels named $(sentinel_master_port || echo none) at the heal"
    nft flush chain inet "$NFT_TABLE" out
    back=$(now_ms)
    measure_ready "$start"
    cluster_restore "$back"
    EXTRA_JSON=",\"rejoinMs\":$REJOIN"
    record_fault partition-redis-master "redis:$master" "$start" "$start" "$detail; back as a replica"
}

# One RabbitMQ node cut off from its peers and its clients for 16-22 s (past net_ticktime 10 s: the node
# sees itself in a minority and pauses, pause_minority; its quorum queues' leaders move to the other two).
# Its own packets are matched by its cgroup (outgoing connections from ephemeral ports included), the
# others' by its AMQP and distribution ports. Healed, it resumes by itself and rejoins.
rabbit_cgroup_path() { # node: the node's cgroup as nft names it (relative to /sys/fs/cgroup), if it exists
    local mount relative
    mount=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -n 1)
    [ -n "$mount" ] && [ -d "$mount/seat-cluster-$CB-rabbit$1" ] || return 1
    relative=${mount#/sys/fs/cgroup}
    relative=${relative#/}
    echo "${relative:+$relative/}seat-cluster-$CB-rabbit$1"
}
fault_partition_rabbit_node() {
    local node start back seconds deadline detail cgroup logs lines paused
    node=$((RANDOM % 3 + 1))
    random_between 16-22
    seconds=$BETWEEN
    cgroup=$(rabbit_cgroup_path "$node") || { log "RabbitMQ node $node has no cgroup: partition-rabbit-node skipped"; return; }
    logs=("$CLUSTER_DIR/rabbit$node"/log/*.log)
    lines=$(cat "${logs[@]}" 2>/dev/null | wc -l)
    start=$(now_ms)
    nft add rule inet "$NFT_TABLE" out socket cgroupv2 level 1 "\"$cgroup\"" drop
    nft add rule inet "$NFT_TABLE" out oifname lo tcp dport "{ $((CB + node)), $((CB + 20000 + node)) }" drop
    deadline=$((SECONDS + seconds))
    until [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    nft flush chain inet "$NFT_TABLE" out
    back=$(now_ms)
    paused=$(cat "${logs[@]}" 2>/dev/null | tail -n +$((lines + 1)) | grep -ci 'minority' || true)
    detail="RabbitMQ node $node cut off from its peers and clients for $seconds s ($paused log lines on its minority)"
    measure_ready "$start"
    # A paused node restarts its broker once it sees its peers again; cluster.sh up must not start it twice.
    # RabbitMQ 3.10.8 (Erlang 25) sometimes hangs in that restart ("Waiting for Mnesia tables", then
    # silence: seen when the heal met the restart): the operator's remedy, kill -9 and start it again.
    if ! wait_until 60 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$((CB + node))) 2>/dev/null"; then
        log "RabbitMQ node $node hung in its restart after the heal; kill -9 and start again"
        detail+="; it hung in its restart after the heal (no AMQP listener 60 s later), killed -9 and started again"
        kill -9 "$(cat "$CLUSTER_DIR/rabbit$node/rabbit.pid")" 2>/dev/null || true
        wait_until 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$((CB + 20000 + node))) 2>/dev/null" || true
    fi
    cluster_restore "$back"
    EXTRA_JSON=",\"rejoinMs\":$REJOIN"
    record_fault partition-rabbit-node "rabbit$node" "$start" "$start" "$detail; running in the cluster again"
}

# Two faults at once: a link partition or a Redis freeze (in the background) and, while it lasts, another
# fault. One record (kind double): from the first start to the later return.
readonly DOUBLE_FIRST=(partition-postgres partition-rabbitmq partition-redis redis-pause)
readonly DOUBLE_SECOND=(kill-core kill-facade kill-rabbitmq rabbitmq-restart postgres-crash postgres-restart redis-flushall)
fault_double() {
    local first second file bg line start1 back1 detail1 delay
    first=${DOUBLE_FIRST[RANDOM % ${#DOUBLE_FIRST[@]}]}
    second=${DOUBLE_SECOND[RANDOM % ${#DOUBLE_SECOND[@]}]}
    if [ "$first" = redis-pause ] && [ "$second" = redis-flushall ]; then second=kill-core; fi
    file=$FAULTS_DIR/double.$faults
    if [ "$first" = redis-pause ]; then
        (
            pid=$(redis_pid)
            start=$(now_ms)
            kill -STOP "$pid"
            sleep $((HOLD_TTL + 1)).5
            kill -CONT "$pid"
            echo "$start $(now_ms) redis SIGSTOP for $((HOLD_TTL + 1)).5 s"
        ) >"$file" &
    else
        draw_partition
        partition_body "${first#partition-}" "$PART_NAME" "$PART_DIRECTION" "$PART_SECONDS" >"$file" &
    fi
    bg=$!
    delay=0.$((RANDOM % 7 + 2))
    sleep "$delay"
    DEFER_RECORD=true
    inject_fault "$second"
    DEFER_RECORD=false
    wait "$bg" || true
    start1=${DEFERRED[2]} back1=${DEFERRED[3]} detail1="not recorded"
    read -r start1 back1 detail1 <"$file" || true
    # DEFERRED: kind target start return detail of the second fault.
    local start=$((start1 < DEFERRED[2] ? start1 : DEFERRED[2])) back=$((back1 > DEFERRED[3] ? back1 : DEFERRED[3]))
    record_fault double "$first+$second" "$start" "$back" \
        "$first ($detail1) and, ${delay} s into it, $second (${DEFERRED[4]})"
}

inject_fault() {
    case "$1" in
    kill-core) fault_kill_core ;;
    kill-core-after-commit) fault_kill_core_after_commit ;;
    kill-relay-unpublished) fault_kill_relay_unpublished ;;
    kill-facade) fault_kill_facade ;;
    rabbitmq-restart) fault_rabbitmq_restart ;;
    redis-flushall) fault_redis_flushall ;;
    redis-restart) fault_redis_restart ;;
    redis-pause) fault_redis_pause ;;
    postgres-restart) fault_postgres_restart fast ;;
    postgres-crash) fault_postgres_restart immediate ;;
    kill-rabbitmq) fault_kill_rabbitmq ;;
    partition-postgres | partition-rabbitmq | partition-redis) fault_partition "${1#partition-}" ;;
    partition-relay-db) fault_partition_relay_db ;;
    double) fault_double ;;
    kill-rabbit-node) fault_kill_rabbit_node ;;
    kill-pg-primary) fault_kill_pg_primary ;;
    kill-redis-master) fault_kill_redis_master ;;
    partition-redis-master) fault_partition_redis_master ;;
    partition-rabbit-node) fault_partition_rabbit_node ;;
    *) log "unknown fault kind $1"; exit 2 ;;
    esac
}

# Every kind at least once per round (33 faults), in a fresh seeded order each round; the cheap ones (and
# the double faults) more often, so that a 12-minute soak holds 150 or more (on a 2-core machine at load
# ~12 a round takes about 2.5 minutes: the broker's restarts and the long partitions are most of it). With --kinds: those, in that order, round
# after round.
ROUND=()
next_fault_kind() {
    if [ ${#ROUND[@]} = 0 ] && [ -n "$kinds_arg" ]; then
        IFS=, read -r -a ROUND <<<"$kinds_arg"
    elif [ ${#ROUND[@]} = 0 ]; then
        local kinds=()
        if $cluster; then
            # The cluster's node faults once a round, the process kills beside them (about 2.5 minutes a round).
            kinds=(kill-rabbit-node kill-pg-primary kill-redis-master partition-redis-master partition-rabbit-node
                kill-core kill-core kill-core-after-commit kill-core-after-commit kill-facade)
        else
        kinds=(kill-core kill-core kill-core kill-core-after-commit kill-core-after-commit
            kill-core-after-commit kill-core-after-commit kill-relay-unpublished kill-relay-unpublished kill-facade
            kill-facade kill-facade rabbitmq-restart kill-rabbitmq redis-flushall redis-flushall redis-flushall
            redis-flushall redis-restart redis-pause
            postgres-restart postgres-crash partition-postgres partition-postgres partition-rabbitmq
            partition-rabbitmq partition-redis partition-redis partition-relay-db double double double double)
        fi
        local i j tmp
        for ((i = ${#kinds[@]} - 1; i > 0; i--)); do
            j=$((RANDOM % (i + 1)))
            tmp=${kinds[i]} kinds[i]=${kinds[j]} kinds[j]=$tmp
        done
        ROUND=("${kinds[@]}")
    fi
    NEXT_KIND=${ROUND[0]}
    ROUND=("${ROUND[@]:1}")
}

# The service works again: a hold committed after the dependency returned (bounded; the checker measures
# the exact time from the clients' history).
wait_recovered() {
    local since=$1 deadline=$((SECONDS + 60))
    until [ $SECONDS -ge $load_end ] || [ "$(psql_ -tAc "SELECT count(*) FROM holds WHERE created_at > to_timestamp($since / 1000.0)" 2>/dev/null)" \
        -gt 0 ] 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { log "no hold committed within 60 s of the last fault's return"; return 1; }
        sleep 0.1
    done
}

# MARK: Start, clean up

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$workload_pid" ] && alive "$workload_pid"; then kill -TERM "$workload_pid" 2>/dev/null || true; fi
    local name
    for name in "${!PIDS[@]}"; do
        kill -CONT "${PIDS[$name]}" 2>/dev/null || true
        kill -9 "${PIDS[$name]}" 2>/dev/null || true
    done
    if $cluster; then
        nft_cluster_down
        if [ "${FAULTS_KEEP_CLUSTER:-0}" = 1 ]; then
            log "the cluster stays up (FAULTS_KEEP_CLUSTER=1): CLUSTER_PORT_BASE=$CB scripts/cluster.sh down --purge"
        else
            cluster_ down --purge >>"$out/cluster-up.log" 2>&1 || true
        fi
    else
        stack_down >/dev/null 2>&1 || true
    fi
    net_down
    # Keep the logs with the report; drop the data directories.
    cp "$FAULTS_DIR"/pg/server.log "$out/postgresql.log" 2>/dev/null || true
    rm -rf "$FAULTS_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$bin" ]; then
    if $control; then
        log "building the CONTROL core (-DINVENTORY_CONTROL_UNSAFE_CLAIM) in .build-control"
        swift build --scratch-path .build-control -Xswiftc -DINVENTORY_CONTROL_UNSAFE_CLAIM \
            >"$out/build.log" 2>&1 || { tail -n 30 "$out/build.log" >&2; exit 1; }
        bin=$(swift build --scratch-path .build-control -Xswiftc -DINVENTORY_CONTROL_UNSAFE_CLAIM --show-bin-path)
    else
        log "building"
        swift build >"$out/build.log" 2>&1 || { tail -n 30 "$out/build.log" >&2; exit 1; }
        bin=$(swift build --show-bin-path)
    fi
fi
bin=$(cd "$bin" && pwd)
for tool in inventory-rpc http-facade inventory-faults; do
    [ -x "$bin/$tool" ] || { log "$bin/$tool is missing: build first (swift build)"; exit 1; }
done

if $cluster; then
    # Fresh: a leftover of an earlier run (its database, its queues) must not meet this one.
    cluster_ down --purge >"$out/cluster-up.log" 2>&1 || true
    log "private cluster: CLUSTER_PORT_BASE=$CB, state in $CLUSTER_DIR (scripts/cluster.sh up)"
    up_started=$SECONDS
    cluster_ up >>"$out/cluster-up.log" 2>&1 || { tail -n 30 "$out/cluster-up.log" >&2; exit 1; }
    log "cluster up in $((SECONDS - up_started)) s: $(cluster_ status | tr -s ' ' | tr '\n' ';')"
    nft_cluster_up
else
    stack_up
fi
env DATABASE_URL="$DATABASE_URL" LOG_LEVEL=warning "$bin/inventory-rpc" migrate
if $control; then
    # The database's second line of defence (decision 0002) would refuse the unsafe claim's double hold.
    psql_ -c 'ALTER TABLE seat_states DISABLE TRIGGER seat_states_guard_update'
    log "CONTROL: unsafe claim build, seat guard trigger disabled in the private database"
fi

for name in $(all_names); do start_process "$name"; done
showtimes=$((duration / SHOWTIME_PERIOD + 3))
common=(--amqp-url "$RABBITMQ_URL" --prefix flt --showtimes "$showtimes" --seats "$SEATS")
"$bin/inventory-faults" prepare "${common[@]}"
wait_all_ready "$(now_ms)"
[ -z "$NOT_READY_JSON" ] || { log "not ready at the start: $NOT_READY_JSON"; exit 1; }

log "load for ${duration}s: $amqp_clients AMQP + $http_clients HTTP clients, seed $seed, report in $out"
"$bin/inventory-faults" workload "${common[@]}" --facade "127.0.0.1:$FACADE_PORT" --amqp-clients "$amqp_clients" \
    --http-clients "$http_clients" --duration "$duration" --period "$SHOWTIME_PERIOD" --seed "$seed" \
    --history "$HISTORY" >"$out/workload.txt" 2>"$out/workload.log" &
workload_pid=$!

load_end=$((SECONDS + duration))
faults=0
if $inject; then
    while :; do
        sleep "$((gap_min + RANDOM % (gap_max - gap_min + 1))).$((RANDOM % 10))"
        [ $SECONDS -lt $((load_end - 3)) ] || break
        check_crashes
        next_fault_kind
        log "fault $((faults + 1)): $NEXT_KIND"
        inject_fault "$NEXT_KIND"
        faults=$((faults + 1))
        wait_recovered "$(tail -n 1 "$FAULTS_LOG" | jq -r '.returnMs // .startMs')" || true
    done
fi
log "load ends; waiting for the clients to finish their last operations"
wait "$workload_pid" || log "workload exited with status $?"
workload_pid=""
cat "$out/workload.txt" >&2
check_crashes
wait_all_ready "$(now_ms)"

# Every hold of the run is dead by now + TTL; one more sweep (and a margin) and nothing may be held.
sleep $((HOLD_TTL + 2 * EXPIRY_INTERVAL + 1))
check_crashes
status=0
check_args=(--database-url "$DATABASE_URL" --history "$HISTORY" --faults "$FAULTS_LOG" --events-log "$out/events.jsonl"
    --report "$out/report")
$control && check_args+=(--control)
"$bin/inventory-faults" check "${common[@]}" "${check_args[@]}" || status=$?

# Clean stop: SIGTERM, exit 0 within 10 s (INTERFACE.md's Processes).
for name in $(all_names); do kill -TERM "${PIDS[$name]}" 2>/dev/null || true; done
for name in $(all_names); do
    code=0
    for _ in $(seq 120); do alive "${PIDS[$name]}" || break; sleep 0.1; done
    if alive "${PIDS[$name]}"; then
        log "$name still running 12 s after SIGTERM; killing it"
        kill -9 "${PIDS[$name]}" 2>/dev/null || true
    fi
    wait "${PIDS[$name]}" || code=$?
    if [ "$code" != 0 ]; then
        log "$name did not stop cleanly on SIGTERM (status $code)"
        $control || status=1
    fi
done
PIDS=()
log "$faults faults injected; report: $out/report.txt"
exit $status
