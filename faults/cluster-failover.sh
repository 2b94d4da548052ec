#!/usr/bin/env bash
# One node failure of the cluster (scripts/cluster.sh) under load, measured: a core (and, with --cores 2, a
# second) serves uniform holds from inventory-bench against the cluster; FAULT_AT seconds in, one node is
# killed; the bench's report (errors, timeouts, max latency: what the fault cost) and its verification (every
# hold answered ok is in the database, on the new primary after a PostgreSQL failover, and its event was
# published) follow. The killed node is started again at the end (scripts/cluster.sh up).
#
#   faults/cluster-failover.sh KIND[,KIND...] [--duration SECONDS] [--every SECONDS] [--in-flight N] [--cores N]
#                              [--bin DIR]
#
#   Several kinds: one after the other, --every seconds apart (default 30), each killed node started again
#   (scripts/cluster.sh up, which waits until the cluster is whole) before the next; --duration must cover
#   them. At the end, besides the bench's verification: the outbox rows never published (must be 0).
#
#   KIND  rabbit-node     kill -9 the RabbitMQ node that the first core's first worker is connected to
#         pg-primary      kill -9 Patroni and PostgreSQL of the primary (the synchronous standby takes over)
#         pg-switchover   patronictl switchover (planned: the primary hands over)
#         redis-master    kill -9 the Redis master (the Sentinels promote the replica)
#         none            no fault (the baseline of the same load)
#
# Needs the cluster up (scripts/cluster.sh up) and the binaries built (default: the debug build).
# Not part of faults/run.sh yet: issue 18's `faults/run.sh --cluster` would run its history checker on top.
set -euo pipefail
cd "$(dirname "$0")/.."
readonly ROOT=$PWD

kind=${1:-}
shift || true
duration=40 every=30 in_flight=16 cores=1 bin=$ROOT/.build/debug
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "cluster-failover.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a kinds <<<"$kind"
[ ${#kinds[@]} -gt 0 ] || { sed -n '2,23p' "$0" >&2; exit 2; }
for one in "${kinds[@]}"; do
    case "$one" in
    rabbit-node | pg-primary | pg-switchover | redis-master | none) ;;
    *) sed -n '2,23p' "$0" >&2; exit 2 ;;
    esac
done
readonly FAULT_AT=${FAULT_AT:-12}
readonly CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/seat-inventory-cluster}
out=$(mktemp -d /tmp/cluster-failover.XXXXXX)

scripts/cluster.sh status >/dev/null || { echo "the cluster is not up: scripts/cluster.sh up" >&2; exit 1; }
eval "$(scripts/cluster.sh env)"
export DATABASE_URL RABBITMQ_URL REDIS_URL
# The bench logs in as guest: the core grants it everything for this run (warned at start).
export RPC_PERMISSIONS="guest=*,act-for-users,admin" OPS_PORT=0 LOG_LEVEL=info MAX_SEATS_PER_USER=0
now_ms() { date +%s%3N; }
log() { printf '%s cluster-failover: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

"$bin/inventory-rpc" migrate >"$out/migrate.log" 2>&1
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
for core in $(seq 1 "$cores"); do
    "$bin/inventory-rpc" serve >"$out/core$core.log" 2>&1 &
    pids+=($!)
done
"$bin/inventory-bench" ping --amqp-url "$RABBITMQ_URL" --wait 60 >/dev/null 2>&1 || { log "the core does not answer"; exit 1; }

fault() {
    local kind=$1
    case "$kind" in
    rabbit-node)
        local port node
        port=$(sed -n 's/.*amqp.connection_name="inventory-rpc rpc-worker-1".*amqp.host=127.0.0.1:\([0-9]*\).*/\1/p' \
            "$out/core1.log" | tail -n 1)
        node=$((port - ${CLUSTER_PORT_BASE:-5800}))
        log "kill -9 RabbitMQ node cluster$node (port $port)"
        kill -9 "$(cat "$CLUSTER_DIR/rabbit$node/rabbit.pid")"
        ;;
    pg-primary)
        local primary
        for primary in 1 2; do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((${CLUSTER_PORT_BASE:-5800} + 3010 + primary))/primary")" = 200 ] && break
        done
        log "kill -9 Patroni and PostgreSQL of the primary pg$primary"
        kill -9 "$(cat "$CLUSTER_DIR/pg$primary/patroni.pid")" "$(head -n 1 "$CLUSTER_DIR/pg$primary/data/postmaster.pid")"
        ;;
    pg-switchover)
        log "patronictl switchover"
        patronictl -c "$CLUSTER_DIR/pg1/patroni.yml" switchover --force >"$out/switchover.log" 2>&1 || cat "$out/switchover.log" >&2
        ;;
    redis-master)
        local master
        master=$(redis-cli -p $((${CLUSTER_PORT_BASE:-5800} + 21011)) sentinel get-master-addr-by-name seat-inventory | tail -n 1)
        log "kill -9 the Redis master (port $master)"
        kill -9 "$(redis-cli -p "$master" info server | tr -d '\r' | sed -n 's/^process_id://p')"
        ;;
    none) log "no fault" ;;
    esac
}

log "load: $(cut -d' ' -f1-3 /proc/loadavg); bench ${duration}s at $in_flight in flight, $cores core(s), fault $kind at ${FAULT_AT}s"
"$bin/inventory-bench" amqp --amqp-url "$RABBITMQ_URL" --database-url "$DATABASE_URL" --in-flight "$in_flight" \
    --connections 2 --duration "$duration" --warmup 2 --showtimes 4 --seats-per-showtime 2000 --shape uniform \
    --timeout 10 >"$out/bench.txt" 2>"$out/bench.err" &
bench=$!
sleep $((FAULT_AT + 2)) # the bench's warm-up, then FAULT_AT seconds of measured load: a schedule, not a wait
fault_ms=$(now_ms)
for index in "${!kinds[@]}"; do
    if [ "$index" -gt 0 ]; then
        scripts/cluster.sh up >"$out/restore-$index.log" 2>&1 || log "scripts/cluster.sh up failed; see $out/restore-$index.log"
        log "cluster whole again: $(scripts/cluster.sh status | tr -s ' ' | tr '\n' ';')"
        sleep "$every" # the spacing of the faults: a schedule
    fi
    log "fault $((index + 1)) of ${#kinds[@]}: ${kinds[$index]}"
    fault "${kinds[$index]}"
done
wait "$bench" || log "the bench exited $?"
cat "$out/bench.txt"
log "after the fault: $(cat "$out"/core*.log | grep -c 'AMQP connection open') AMQP connections opened in all, reconnect lines:"
grep -h 'reconnect\|connection lost\|database connection\|redis connection dropped' "$out"/core*.log | head -n 12 >&2 || true
echo "first fault at $fault_ms ms (epoch); logs in $out"
echo "violations by kind: $(grep -o 'VIOLATION [a-z-]*' "$out/bench.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
echo "outbox rows never published: $(psql "$DATABASE_URL" -Atc 'SELECT count(*) FROM outbox WHERE published_at IS NULL')"
scripts/cluster.sh up >/dev/null
scripts/cluster.sh status
