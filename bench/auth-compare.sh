#!/usr/bin/env bash
# REST hold throughput with JWT verification on and off, in one run (issue 12): one core on a vhost and
# database of its own, two facades in front of it, one with AUTH_MODE=jwt and one with AUTH_MODE=none,
# and inventory-bench alternating between them (ROUNDS rounds of on, off), then `inventory-bench
# jwt-cost` for the per-request cost on this machine. Prints one line per run and the load average.
#
#   bench/auth-compare.sh          DURATION=10 WARMUP=2 IN_FLIGHT=64 ROUNDS=2 SHAPE=uniform BIN=.build/release
#
# Needs the services of scripts/services.sh (PostgreSQL, Redis, RabbitMQ on their standard ports) and a
# build (`swift build -c release`). Removes its vhost and database at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BIN:-$root/.build/release}
DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} IN_FLIGHT=${IN_FLIGHT:-64} ROUNDS=${ROUNDS:-2} SHAPE=${SHAPE:-uniform}
id=authcmp$$
vhost=$id database=$id
amqp="amqp://guest:guest@localhost:5672/$vhost"
dburl="postgresql://postgres:postgres@localhost:5432/$database"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
out=$(mktemp -d)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    PGPASSWORD=postgres dropdb -h localhost -U postgres --if-exists --force "$database" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
PGPASSWORD=postgres createdb -h localhost -U postgres "$database"
DATABASE_URL=$dburl "$bin/inventory-rpc" migrate >/dev/null

# The facades log in as guest on the scratch vhost, which the core's default table grants nothing; the
# benchmark's users hold many seats each (no seat limit).
DATABASE_URL=$dburl RABBITMQ_URL=$amqp OPS_PORT=0 LOG_LEVEL=warning RPC_PERMISSIONS="guest=*,act-for-users,admin" \
    MAX_SEATS_PER_USER=0 "$bin/inventory-rpc" serve >"$out/core.log" 2>&1 &
pids+=($!)
port_on=$((20000 + RANDOM % 20000))
port_off=$((port_on + 1))
RABBITMQ_URL=$amqp PORT=$port_on FACADE_OPS_PORT=0 AUTH_MODE=jwt JWT_SECRET=$secret LOG_LEVEL=warning \
    RATE_LIMIT_ENABLED=false "$bin/http-facade" >"$out/facade-on.log" 2>&1 &
pids+=($!)
RABBITMQ_URL=$amqp PORT=$port_off FACADE_OPS_PORT=0 AUTH_MODE=none LOG_LEVEL=warning \
    RATE_LIMIT_ENABLED=false "$bin/http-facade" >"$out/facade-off.log" 2>&1 &
pids+=($!)
for port in $port_on $port_off; do
    ready=false
    for _ in $(seq 1 150); do
        if curl -sf "http://localhost:$port/readyz" >/dev/null 2>&1; then ready=true; break; fi
        sleep 0.2
    done
    $ready || { echo "auth-compare: the facade on $port never became ready" >&2; cat "$out"/*.log >&2; exit 1; }
done

echo "auth-compare: $(date -u +%FT%TZ), DURATION=$DURATION WARMUP=$WARMUP IN_FLIGHT=$IN_FLIGHT SHAPE=$SHAPE ROUNDS=$ROUNDS"
echo "auth-compare: uptime at start: $(uptime)"
for round in $(seq 1 "$ROUNDS"); do
    for mode in jwt none; do
        if [ "$mode" = jwt ]; then
            url=http://localhost:$port_on tokens=(--jwt-secret "$secret")
        else
            url=http://localhost:$port_off tokens=(--no-tokens)
        fi
        JWT_SECRET='' "$bin/inventory-bench" http --facade-url "$url" --amqp-url "$amqp" --database-url "$dburl" \
            "${tokens[@]}" --in-flight "$IN_FLIGHT" --duration "$DURATION" --warmup "$WARMUP" --shape "$SHAPE" \
            --json >"$out/run.json"
        python3 - "$round" "$mode" "$out/run.json" <<'PY'
import json, sys
round_, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
report = json.load(open(path))
for row in report["operations"]:
    if row["operation"] == "hold":
        bad = row["error"] + row["timeout"]
        print(f"round {round_} AUTH_MODE={mode:4}: hold {row['throughputPerSecond']:8.1f}/s  "
              f"p50 {row['p50Ms']:7.1f} ms  p99 {row['p99Ms']:7.1f} ms  won {row['won']}  "
              f"conflict {row['conflict']}  error+timeout {bad} {row['errorCodes'] or ''}")
PY
    done
done
echo "auth-compare: uptime at end: $(uptime)"
"$bin/inventory-bench" jwt-cost
