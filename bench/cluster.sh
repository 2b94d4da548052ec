#!/usr/bin/env bash
# Issue 18's must-show: throughput of 2 cores and 2 facades on the cluster (scripts/cluster.sh: three RabbitMQ
# nodes with quorum queues, PostgreSQL under Patroni with a synchronous standby, Redis with Sentinels) against
# 1 core and 1 facade on the single-node services, in ONE run, the sides alternating round by round, the same
# workload on both; and the measurement behind item 4 (showtime affinity): the cluster with 1 core under the
# same load as with 2.
#
# Each round (RUNS rounds; odd rounds start with the single side, even rounds with the cluster):
#   single    1 core + 1 facade on one PostgreSQL, one Redis and one RabbitMQ node, started by this script at
#             its own priority (SINGLE=private, below; SINGLE=shared: scripts/services.sh's), on a scratch
#             database and vhost of the run's own
#   cluster   2 cores + 2 facades on the cluster's URLs (`scripts/cluster.sh env`: libpq multi-host with
#             target_session_attrs=read-write, three AMQP nodes with queue_type=quorum, the Sentinels), on a
#             scratch database (on the primary) and a scratch vhost of the run's own
#   cluster1  (STEPS has affinity) 1 core on the same cluster, no facade
# and on each side these steps (inventory-bench, each with its own showtimes, each verified):
#   echo          null AMQP RPC, 64 in flight, a transient classic queue (the broker's floor)
#   echo-quorum   (cluster) the same through a durable queue, a quorum queue there: one RPC hop as the core's
#                 request queues cost it on the cluster (what an extra hop for affinity would cost)
#   amqp          uniform holds over AMQP, IN_FLIGHT in flight (20 showtimes x 10,000 seats, as issue 16)
#   http          uniform holds over REST, IN_FLIGHT in flight, the sockets spread over the side's facades
#   mix           (affinity) polls, holds, purchases and releases on 4 showtimes of 2,000 seats (the
#                 availability read path under writes), IN_FLIGHT in flight, over AMQP
#   hot           (affinity) the hot rush of issue 16: 1,000 in flight on 10 seats of a 100-seat showtime
# With the CPU each process kind spent per hold inside the measured seconds of echo, amqp and http
# (bench/cluster_cpu.py: the processes named by their listening ports and pid trees, so other topologies on
# this machine are not counted); around every step each core's /metrics (hold batches, deferred holds, RPC
# counts and durations) and the database's pg_stat_user_functions (track_functions = all on the scratch
# database: the availability and batch functions' calls and times).
#
#   scripts/cluster.sh up      # with CLUSTER_PORT_BASE / CLUSTER_DIR as below (else this script starts it)
#   SKIP_BUILD=1 RUNS=3 nice -n 19 bench/cluster.sh
#   bench/cluster_report.py OUT                                  # the summary (run at the end)
#
# SIDES="cluster cluster1" runs only those sides (in that order) each round; CLUSTER_WORKERS=N starts the
# "cluster" side's cores with WORKERS=N (default: the core's own, 8; cluster1 keeps the default).
# Knobs: DURATION (10), WARMUP (3), IN_FLIGHT (64), HOT_IN_FLIGHT (1000), CONNECTIONS (2: driver threads;
# REST: one per facade), RUNS (1), STEPS ("echo amqp http affinity"), CLUSTER_CORES (2), BUILD_PATH
# (.build-release), BIN (its release dir), OUT (BUILD_PATH/cluster/<UTC time>), CLUSTER_PORT_BASE (5900),
# CLUSTER_DIR (/var/tmp/seat-inventory-cluster-<base>), KEEP_CLUSTER (0: a cluster this script started is
# stopped and purged at the end; one that was up is left up), SINGLE (private: the single side's own nodes,
# default; shared: scripts/services.sh's), SINGLE_DIR, COMMIT (a name for the build). Exits 1 if a
# verification failed or a step did not run. Never stops or flushes a shared service.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
IN_FLIGHT="${IN_FLIGHT:-64}"
HOT_IN_FLIGHT="${HOT_IN_FLIGHT:-1000}"
CONNECTIONS="${CONNECTIONS:-2}"
RUNS="${RUNS:-1}"
STEPS="${STEPS:-echo amqp http affinity}"
CLUSTER_CORES="${CLUSTER_CORES:-2}"
BUILD_PATH="${BUILD_PATH:-$root/.build-release}"
BIN="${BIN:-$BUILD_PATH/release}"
export CLUSTER_PORT_BASE="${CLUSTER_PORT_BASE:-5900}"
export CLUSTER_DIR="${CLUSTER_DIR:-/var/tmp/seat-inventory-cluster-$CLUSTER_PORT_BASE}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
# The single side: "private" (default) runs a PostgreSQL, a Redis and a RabbitMQ node of this script's own at
# the script's priority (nice), configured as the cluster's nodes are, on ports base+50 / +60 / +70; "shared"
# uses the single-node services of scripts/services.sh (5432 / 6379 / 5672), which run at normal priority and
# serve everybody's tests: against a cluster started under `nice -n 19`, that would compare priorities.
SINGLE="${SINGLE:-private}"
SINGLE_DIR="${SINGLE_DIR:-/var/tmp/seat-inventory-single-$CLUSTER_PORT_BASE}"
PGHOST="${PGHOST:-localhost}" PGUSER="${PGUSER:-postgres}" PGPASSWORD="${PGPASSWORD:-postgres}"
export PGHOST PGUSER PGPASSWORD
AMQP_BASE="${AMQP_BASE:-amqp://guest:guest@localhost:5672}"
base=$CLUSTER_PORT_BASE
rabbit_node1=$([ "$base" = 5800 ] && echo "cluster1@localhost" || echo "cluster1-$base@localhost")
single_pg_port=$((base + 50)) single_redis_port=$((base + 60)) single_amqp_port=$((base + 70))
single_node="single-$base@localhost"
PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    start=$(date +%s)
    (cd "$root" && swift build -c release --build-path "$BUILD_PATH" 2>&1 | tail -3)
    echo "== release build: $(($(date +%s) - start)) s" >&2
fi

OUT="${OUT:-$BUILD_PATH/cluster/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
has() { [[ " $STEPS " == *" $1 "* ]]; }
say() { # the side's JWT secret is not printed
    local text="$*"
    [[ -z "${jwt_secret:-}" ]] || text="${text//$jwt_secret/SECRET}"
    echo "== $(date -u +%H:%M:%S) $text (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

id="$$$RANDOM"
pids=()      # the side's processes (stopped at the end of each side)
cores=()     # "name pid opsport" per core of the side
facades=()   # "name pid port" per facade of the side
roots=()     # --root NAME=PID for bench/cluster_cpu.py
failures=()
side_db="" side_vhost="" side_kind="" side_dburl="" side_amqp="" side_redis="" side_psql=()
started_cluster=0

stop_side() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=() cores=() facades=() roots=()
    if [[ -n "$side_db" ]]; then
        "${side_psql[@]}" -d postgres -qc "DROP DATABASE IF EXISTS $side_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n "$side_vhost" ]]; then
        if [[ "$side_kind" == single && "$SINGLE" == shared ]]; then
            rabbitmqctl delete_vhost "$side_vhost" >/dev/null 2>&1 || true
        elif [[ "$side_kind" == single ]]; then
            rabbitmqctl -n "$single_node" delete_vhost "$side_vhost" >/dev/null 2>&1 || true
        else
            rabbitmqctl -n "$rabbit_node1" delete_vhost "$side_vhost" >/dev/null 2>&1 || true
        fi
    fi
    side_db="" side_vhost=""
}
cleanup() {
    stop_side
    if [[ "$SINGLE" == private ]]; then single_down; fi
    if ((started_cluster)) && [[ "$KEEP_CLUSTER" != 1 ]]; then
        say "stopping the cluster this script started (down --purge)"
        "$root/scripts/cluster.sh" down --purge >&2 || true
    fi
}
trap cleanup EXIT

listen_pid() { # port: the process listening on it (first one)
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}
free_port() { # below the ephemeral range, clear of the topologies' ports (scripts/free_ports.py)
    python3 "$root/scripts/free_ports.py" 1
}
wait_http() { # url seconds: until it answers 200
    local deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null --max-time 2 "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

wait_until() { # seconds command...: polls the command until it succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
single_rabbit() { # command...: with the private node's environment (as scripts/cluster.sh runs its nodes)
    local dir="$SINGLE_DIR/rabbit"
    env RABBITMQ_NODENAME="$single_node" RABBITMQ_NODE_PORT="$single_amqp_port" \
        RABBITMQ_DIST_PORT="$((base + 20070))" RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
        RABBITMQ_PID_FILE="$dir/rabbit.pid" "$@"
}
single_pg_ctl() { (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$SINGLE_DIR/pg/data" "$@"); }
# The private single nodes, configured as the cluster's: PostgreSQL with the Patroni members' settings that
# are not about replication (data checksums, shared_buffers 64MB, max_connections 200, wal_log_hints, fsync and
# synchronous_commit on), Redis without persistence, a RabbitMQ node with the cluster nodes' rabbitmq.conf.
single_up() {
    [[ -n "$PG_BIN" ]] || { echo "PostgreSQL is not installed" >&2; return 1; }
    mkdir -p "$SINGLE_DIR/pg" "$SINGLE_DIR/redis" "$SINGLE_DIR/rabbit/mnesia" "$SINGLE_DIR/rabbit/log"
    chmod 755 "$SINGLE_DIR"
    chown postgres:postgres "$SINGLE_DIR/pg"
    if [[ ! -s "$SINGLE_DIR/pg/data/PG_VERSION" ]]; then
        (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$SINGLE_DIR/pg/data" -U postgres --auth=trust -E UTF8 \
            --data-checksums) >"$SINGLE_DIR/initdb.log" 2>&1 || { cat "$SINGLE_DIR/initdb.log" >&2; return 1; }
    fi
    if ! single_pg_ctl status >/dev/null 2>&1; then
        single_pg_ctl -l "$SINGLE_DIR/pg/postgres.log" -w -t 120 -o "-c port=$single_pg_port \
            -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SINGLE_DIR/pg -c shared_buffers=64MB \
            -c max_connections=200 -c wal_log_hints=on -c fsync=on -c synchronous_commit=on" start \
            >/dev/null 2>&1 </dev/null || { tail -n 20 "$SINGLE_DIR/pg/postgres.log" >&2; return 1; }
    fi
    if [[ "$(redis-cli -p "$single_redis_port" ping 2>/dev/null)" != PONG ]]; then
        redis-server --daemonize yes --bind 127.0.0.1 --port "$single_redis_port" --save '' --appendonly no \
            --dir "$SINGLE_DIR/redis" --pidfile "$SINGLE_DIR/redis/redis.pid" --logfile "$SINGLE_DIR/redis/redis.log" \
            >/dev/null </dev/null
        wait_until 30 bash -c "[ \"\$(redis-cli -p $single_redis_port ping 2>/dev/null)\" = PONG ]" ||
            { echo "the private Redis does not answer" >&2; return 1; }
    fi
    if ! port_open "$single_amqp_port"; then
        echo '[].' >"$SINGLE_DIR/rabbit/enabled_plugins"
        cat >"$SINGLE_DIR/rabbit/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$single_amqp_port
disk_free_limit.absolute = 50MB
max_message_size = 16777216
vm_memory_high_watermark.absolute = 1GB
CONF
        chown -R rabbitmq:rabbitmq "$SINGLE_DIR/rabbit"
        single_rabbit rabbitmq-server -detached >>"$SINGLE_DIR/rabbit/start.log" 2>&1 </dev/null || true
    fi
    wait_until 180 port_open "$single_amqp_port" &&
        timeout 180 rabbitmqctl -n "$single_node" -q await_startup >/dev/null 2>&1 ||
        { tail -n 20 "$SINGLE_DIR/rabbit/start.log" >&2; echo "the private RabbitMQ node did not start" >&2; return 1; }
}
single_down() {
    [[ -d "$SINGLE_DIR" ]] || return 0
    timeout 60 rabbitmqctl -n "$single_node" -q stop "$SINGLE_DIR/rabbit/rabbit.pid" >/dev/null 2>&1 || true
    redis-cli -p "$single_redis_port" shutdown nosave >/dev/null 2>&1 || true
    if [[ -s "$SINGLE_DIR/pg/data/postmaster.pid" ]]; then single_pg_ctl -m fast -w -t 60 stop >/dev/null 2>&1 || true; fi
    rm -rf "${SINGLE_DIR:?}"
}

{
    echo "start: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "uptime: $(uptime)"
    # Inside /work/coord/sb git cannot read the worktree: pass COMMIT=$(git rev-parse --short HEAD) then.
    echo "commit: ${COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    echo "binaries: $BIN"
    echo "steps: $STEPS; RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP IN_FLIGHT=$IN_FLIGHT HOT_IN_FLIGHT=$HOT_IN_FLIGHT CONNECTIONS=$CONNECTIONS CLUSTER_CORES=$CLUSTER_CORES"
    echo "cluster: CLUSTER_PORT_BASE=$CLUSTER_PORT_BASE CLUSTER_DIR=$CLUSTER_DIR; single side: $SINGLE; SIDES=${SIDES:-default} CLUSTER_WORKERS=${CLUSTER_WORKERS:-default}"
} | tee "$OUT/run.txt" >&2

if ! "$root/scripts/cluster.sh" status >"$OUT/cluster-status-before.txt" 2>&1; then
    say "the cluster is not (all) up: scripts/cluster.sh up"
    started_cluster=1
    "$root/scripts/cluster.sh" up >"$OUT/cluster-up.log" 2>&1 || { cat "$OUT/cluster-up.log" >&2; exit 1; }
fi
"$root/scripts/cluster.sh" status | tee "$OUT/cluster-status.txt" >&2
eval "$("$root/scripts/cluster.sh" env)" # DATABASE_URL, RABBITMQ_URL, REDIS_URL of the cluster
cluster_dburl=$DATABASE_URL cluster_amqp=$RABBITMQ_URL cluster_redis=$REDIS_URL
unset DATABASE_URL RABBITMQ_URL REDIS_URL
if [[ "$SINGLE" == private ]]; then
    say "the private single nodes: PostgreSQL $single_pg_port, Redis $single_redis_port, RabbitMQ $single_amqp_port"
    single_up
fi

# MARK: - Sides

# The core's environment, as bench/issue16.sh runs it: the bench logs in as guest on the scratch vhost
# (RPC_PERMISSIONS grants it everything there), users hold without releasing (MAX_SEATS_PER_USER=0), holds live
# 300 s (nothing expires during a step).
start_core() { # name
    local name=$1 ops
    ops=$(free_port)
    local workers=()
    [[ "$side" != cluster || -z "${CLUSTER_WORKERS:-}" ]] || workers=(WORKERS="$CLUSTER_WORKERS")
    env "${workers[@]+"${workers[@]}"}" \
    DATABASE_URL="$side_dburl" RABBITMQ_URL="$side_amqp" REDIS_URL="$side_redis" HOLD_TTL_SECONDS=300 \
        OPS_PORT="$ops" LOG_LEVEL=warning RPC_PERMISSIONS="guest=*,act-for-users,admin" MAX_SEATS_PER_USER=0 \
        "$BIN/inventory-rpc" serve >"$dir/$name.log" 2>&1 &
    pids+=($!)
    cores+=("$name $! $ops")
    roots+=(--root "$name=$!")
}
start_facade() { # name
    local name=$1 port
    port=$(free_port)
    # Authentication on (HS256, a token per simulated user); rate limits off and the per-address limit above
    # 1,000 (every simulated buyer comes from this one address); RPC_TIMEOUT_MS as the bench's rush timeout.
    RABBITMQ_URL="$side_amqp" REDIS_URL="$side_redis" PORT="$port" FACADE_OPS_PORT=0 AUTH_MODE=jwt \
        JWT_SECRET="$jwt_secret" LOG_LEVEL=warning RATE_LIMIT_ENABLED=false HTTP_MAX_CONNECTIONS_PER_ADDRESS=4096 \
        RPC_TIMEOUT_MS=10000 "$BIN/http-facade" >"$dir/$name.log" 2>&1 &
    pids+=($!)
    facades+=("$name $! $port")
    roots+=(--root "$name=$!")
}
await_side() {
    local entry name pid port
    for entry in "${cores[@]}"; do
        read -r name pid port <<<"$entry"
        wait_http "http://127.0.0.1:$port/readyz" 90 || { say "$name not ready (see $dir/$name.log)"; return 1; }
    done
    "$BIN/inventory-bench" ping --amqp-url "$side_amqp" --wait 60 >/dev/null || { say "no core answers ping"; return 1; }
    for entry in "${facades[@]+"${facades[@]}"}"; do
        read -r name pid port <<<"$entry"
        wait_http "http://127.0.0.1:$port/readyz" 90 || { say "$name not ready (see $dir/$name.log)"; return 1; }
    done
}

start_single() {
    side_kind=single
    side_db="inv_i18_${id}_${round}_$side"
    side_vhost="bench-i18-$id-$round-$side"
    local pg_port=5432 redis_port=6379 amqp_port=5672 ctl=(rabbitmqctl)
    if [[ "$SINGLE" == private ]]; then
        pg_port=$single_pg_port redis_port=$single_redis_port amqp_port=$single_amqp_port
        ctl=(rabbitmqctl -n "$single_node")
        side_psql=(psql -X -h 127.0.0.1 -p "$pg_port" -U postgres)
        side_dburl="postgresql://postgres:postgres@127.0.0.1:$pg_port/$side_db"
        side_amqp="amqp://guest:guest@127.0.0.1:$amqp_port/$side_vhost"
        side_redis="redis://127.0.0.1:$redis_port"
    else
        side_psql=(psql -X -h "$PGHOST" -U "$PGUSER")
        side_dburl="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:5432/$side_db"
        side_amqp="$AMQP_BASE/$side_vhost"
        side_redis="redis://localhost:6379"
    fi
    "${side_psql[@]}" -d postgres -qc "CREATE DATABASE $side_db" >/dev/null
    "${ctl[@]}" add_vhost "$side_vhost" >/dev/null
    "${ctl[@]}" set_permissions -p "$side_vhost" guest ".*" ".*" ".*" >/dev/null
    prepare_database
    start_core core1
    start_facade facade1
    roots+=(--root "broker=$(listen_pid "$amqp_port")" --root "pg=$(listen_pid "$pg_port")" --root "redis=$(listen_pid "$redis_port")")
    await_side
}

start_cluster() { # cores facades
    local ncores=$1 nfacades=$2 primary=""
    side_kind=cluster
    side_db="inv_i18_${id}_${round}_$side"
    side_vhost="bench-i18-$id-$round-$side"
    for node in 1 2; do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$((base + 3010 + node))/primary")" == 200 ]] &&
            primary=$node
    done
    [[ -n "$primary" ]] || { say "no PostgreSQL primary in the cluster"; return 1; }
    side_psql=(psql -X -h 127.0.0.1 -p "$((base + 10 + primary))" -U postgres)
    side_dburl="${cluster_dburl/\/inventory_db\?//$side_db?}"
    side_amqp="${cluster_amqp/\/\?//$side_vhost?}"
    side_redis="$cluster_redis"
    "${side_psql[@]}" -d postgres -qc "CREATE DATABASE $side_db" >/dev/null
    rabbitmqctl -n "$rabbit_node1" add_vhost "$side_vhost" >/dev/null
    rabbitmqctl -n "$rabbit_node1" set_permissions -p "$side_vhost" guest ".*" ".*" ".*" >/dev/null
    prepare_database
    for n in $(seq 1 "$ncores"); do start_core "core$n"; done
    for n in $(seq 1 "$nfacades"); do start_facade "facade$n"; done
    local node port role
    for node in 1 2 3; do roots+=(--root "rabbit$node=$(listen_pid $((base + node)))"); done
    for node in 1 2; do
        role=pgstandby
        [[ "$node" == "$primary" ]] && role=pgprimary
        roots+=(--root "$role=$(listen_pid $((base + 10 + node)))" --root "patroni$node=$(listen_pid $((base + 3010 + node)))")
        port=$((base + 1010 + node))
        role=redis-replica
        [[ "$(redis-cli -p "$port" role 2>/dev/null | head -n 1)" == master ]] && role=redis-master
        roots+=(--root "$role=$(listen_pid "$port")")
    done
    for node in 1 2 3; do
        roots+=(--root "sentinel$node=$(listen_pid $((base + 21010 + node)))" --root "etcd$node=$(listen_pid $((base - 3000 + node)))")
    done
    await_side
}

# The schema (`inventory-rpc migrate`), and per-function statistics for the steps' accounts: sessions read
# track_functions when they connect, so before the cores start.
prepare_database() {
    DATABASE_URL="$side_dburl" "$BIN/inventory-rpc" migrate >"$dir/migrate.log" 2>&1 ||
        { say "migrate failed (see $dir/migrate.log)"; return 1; }
    "${side_psql[@]}" -d postgres -qc "ALTER DATABASE $side_db SET track_functions = 'all'" >/dev/null
}

# MARK: - Steps

counters() { # file: every core's /metrics and the database's function statistics, now
    local entry name pid port
    : >"$1"
    for entry in "${cores[@]}"; do
        read -r name pid port <<<"$entry"
        curl -s --max-time 5 "http://127.0.0.1:$port/metrics" | sed "s/^/$name /" >>"$1" || true
    done
    "${side_psql[@]}" -d "$side_db" -AtX -F ' ' -c \
        "SELECT 'db function', funcname, calls, total_time, self_time FROM pg_stat_user_functions" >>"$1" 2>/dev/null || true
}

# CPU per process kind inside the bench's measured window: bench/cluster_cpu.py window, started beside the
# bench, takes the snapshots (and each core's hold count) at the start and end of its measured seconds.
cpu_window() { # name, bench stderr file, bench pid (an echo step counts its calls by its rate, not by the cores)
    local name="$1" err="$2" bench="$3" entry core pid port metrics=()
    [[ "$name" == echo* ]] || for entry in "${cores[@]}"; do
        read -r core pid port <<<"$entry"
        metrics+=(--metrics "$core=http://127.0.0.1:$port/metrics")
    done
    python3 "$here/cluster_cpu.py" window "$dir/$name" --err "$err" --bench "$bench" --warmup "$WARMUP" \
        --duration "$DURATION" "${metrics[@]+"${metrics[@]}"}" "${roots[@]}" --database "$side_db"
}

step() { # name, cpu (1 or 0), inventory-bench arguments...
    local name="$1" cpu="$2"
    shift 2
    say "round $round $side $name: inventory-bench $*"
    counters "$dir/$name.counters-before.txt"
    "$BIN/inventory-bench" "$@" --json >"$dir/$name.json" 2>"$dir/$name.err" &
    local bench=$! status=0 sampler=""
    if ((cpu)); then
        cpu_window "$name" "$dir/$name.err" "$bench" &
        sampler=$!
    fi
    wait "$bench" || status=$?
    if [[ -n "$sampler" ]]; then wait "$sampler" || true; fi
    counters "$dir/$name.counters-after.txt"
    if ((status)); then
        failures+=("round $round $side $name: exit $status (see $dir/$name.err)")
        echo "   $name: exit $status" >&2
    fi
}

run_side() { # single | cluster | cluster1
    side=$1
    dir="$OUT/round$round/$side"
    mkdir -p "$dir"
    jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    case "$side" in
    single) start_single ;;
    cluster) start_cluster "$CLUSTER_CORES" "$CLUSTER_CORES" ;;
    cluster1) start_cluster 1 0 ;;
    esac || { failures+=("round $round $side: did not start"); stop_side; return 0; }
    printf '%s\n' "${roots[@]}" | paste -sd' ' >"$dir/roots.txt"
    if [[ "$side" != single ]]; then # where the RPC queues' leaders are (quorum queues: every publish goes there)
        timeout 60 rabbitmqctl -n "$rabbit_node1" -q list_queues -p "$side_vhost" name type leader members \
            >"$dir/queues.txt" 2>&1 || true
    fi
    local common=(--connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP")
    local load=(--amqp-url "$side_amqp" --database-url "$side_dburl" "${common[@]}")
    local urls="" entry name pid port
    for entry in "${facades[@]+"${facades[@]}"}"; do
        read -r name pid port <<<"$entry"
        urls+="${urls:+,}http://127.0.0.1:$port"
    done
    if [[ "$side" != cluster1 ]]; then
        has echo && step echo 1 echo --amqp-url "$side_amqp" "${common[@]}" --in-flight "$IN_FLIGHT"
        has echo && [[ "$side" == cluster ]] &&
            step echo-quorum 1 echo --durable-queue --amqp-url "$side_amqp" "${common[@]}" --in-flight "$IN_FLIGHT"
    fi
    if has amqp || [[ "$side" == cluster1 ]]; then
        step amqp 1 amqp "${load[@]}" --in-flight "$IN_FLIGHT" --shape uniform
    fi
    if has http && [[ -n "$urls" ]]; then
        step http 1 http "${load[@]}" --facade-url "$urls" --jwt-secret "$jwt_secret" --in-flight "$IN_FLIGHT" \
            --shape uniform
    fi
    if has affinity && [[ "$side" != single ]]; then
        step mix 0 amqp "${load[@]}" --in-flight "$IN_FLIGHT" --shape mix --showtimes 4 --seats-per-showtime 2000
        step hot 0 amqp "${load[@]}" --in-flight "$HOT_IN_FLIGHT" --shape hot --hot-seats 10 --showtimes 1 \
            --seats-per-showtime 100 --seats-per-hold 1-2 --timeout 10
    fi
    stop_side
}

for round in $(seq 1 "$RUNS"); do
    sides=(single cluster)
    ((round % 2)) || sides=(cluster single)
    has affinity && sides+=(cluster1)
    if [[ -n "${SIDES:-}" ]]; then read -r -a sides <<<"$SIDES"; fi
    for side in "${sides[@]}"; do run_side "$side"; done
done

echo "end: $(date -u +%Y-%m-%dT%H:%M:%SZ); uptime: $(uptime)" | tee -a "$OUT/run.txt" >&2
printf '%s\n' "${failures[@]+"${failures[@]}"}" >"$OUT/failures.txt"
python3 "$here/cluster_report.py" "$OUT" | tee "$OUT/summary.txt"
status=${PIPESTATUS[0]}
((${#failures[@]} == 0)) || { printf 'FAILED: %s\n' "${failures[@]}" >&2; exit 1; }
exit "$status"
