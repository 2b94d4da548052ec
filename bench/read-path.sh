#!/usr/bin/env bash
# The availability read path before and after (issue 16 item 4, decision 0023), in one run: two builds of
# `inventory-rpc`, each started in turn on a scratch database and vhost of its own, measured with the same
# `inventory-bench` commands, ROUNDS times alternating (A B A B ...), so both see the same machine.
#
#   bench/read-path.sh BEFORE_BIN_DIR AFTER_BIN_DIR      # e.g. a build of the base commit and .build/release
#   DURATION=10 WARMUP=2 ROUNDS=2 STEPS="availability rest mix uniform hot" bench/read-path.sh ...
#   (rest: GET /availability through the http-facade of FACADE_BIN_DIR, default AFTER_BIN_DIR)
#
# Per build and round: availability of 2,000-seat showtimes at 8 in flight (reads only: every read revalidates,
# nothing changes), the mix (polls between holds, purchases and releases: reads that find changes), uniform
# holds at 64 in flight and a hot rush on one showtime (what the change rows cost the writes). The inventory-bench
# of AFTER_BIN_DIR drives both. Prints one line per measurement; JSON per run in $OUT.
set -euo pipefail

before="${1:?usage: read-path.sh BEFORE_BIN_DIR AFTER_BIN_DIR}"
after="${2:?usage: read-path.sh BEFORE_BIN_DIR AFTER_BIN_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-2}"
STEPS="${STEPS:-availability rest mix uniform hot}"
PGHOST="${PGHOST:-localhost}" PGUSER="${PGUSER:-postgres}" PGPASSWORD="${PGPASSWORD:-postgres}"
export PGHOST PGUSER PGPASSWORD
AMQP_BASE="${AMQP_BASE:-amqp://guest:guest@localhost:5672}"
OUT="${OUT:-$root/.build/read-path}"
mkdir -p "$OUT"
rm -f "$OUT"/*.json
bench="$after/inventory-bench"

id="$$$RANDOM"
core=""
db=""
vhost=""
cleanup() {
    if [[ -n "$core" ]]; then kill "$core" 2>/dev/null || true; wait "$core" 2>/dev/null || true; fi
    [[ -n "$db" ]] && dropdb --if-exists --force "$db" 2>/dev/null || true
    [[ -n "$vhost" ]] && rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
}
trap cleanup EXIT

has() { [[ " $STEPS " == *" $1 "* ]]; }

summary() {  # JSON report, operation -> "ops/s p50 p99"
    python3 - "$1" "$2" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for row in report["operations"]:
    if row["operation"] == sys.argv[2]:
        print(f"{row['throughputPerSecond']:9.1f}/s  p50 {row['p50Ms']:7.2f} ms  p99 {row['p99Ms']:7.2f} ms  "
              f"errors {row['error']} timeouts {row['timeout']}  (load {report['load']})")
EOF
}

run() {  # label, bin dir, round
    local label="$1" bin="$2" round="$3"
    db="inv_readpath_${id}_${label}_$round"
    vhost="bench-readpath-$id-$label-$round"
    local url="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:5432/$db"
    local amqp="$AMQP_BASE/$vhost"
    rabbitmqctl add_vhost "$vhost" >/dev/null
    rabbitmqctl set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
    createdb "$db"
    DATABASE_URL="$url" "$bin/inventory-rpc" migrate >"$OUT/migrate.log" 2>&1
    DATABASE_URL="$url" RABBITMQ_URL="$amqp" HOLD_TTL_SECONDS=300 EXPIRY_INTERVAL_SECONDS=5 OPS_PORT=0 \
        LOG_LEVEL=warning RPC_PERMISSIONS="guest=*,act-for-users,admin" MAX_SEATS_PER_USER=0 \
        "$bin/inventory-rpc" serve >"$OUT/core-$label-$round.log" 2>&1 &
    core=$!
    "$bench" ping --amqp-url "$amqp" --wait 30 >/dev/null
    local common=(--amqp-url "$amqp" --database-url "$url" --duration "$DURATION" --warmup "$WARMUP" --json)
    if has availability; then
        "$bench" amqp "${common[@]}" --in-flight 8 --shape availability --showtimes 4 --seats-per-showtime 2000 \
            --no-verify >"$OUT/availability-$label-$round.json" 2>"$OUT/availability-$label-$round.err" \
            || echo "   availability: exit $? (see $OUT/availability-$label-$round.err)"
        echo "round $round $label availability (2,000 seats, 8 in flight): $(summary "$OUT/availability-$label-$round.json" availability)"
    fi
    if has rest; then
        # The facade of FACADE_BIN_DIR (default AFTER_BIN_DIR) in front of the core: GET /availability.
        local port=$(( 20000 + RANDOM % 20000 )) secret
        secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
        RABBITMQ_URL="$amqp" PORT="$port" FACADE_OPS_PORT=0 AUTH_MODE=jwt JWT_SECRET="$secret" LOG_LEVEL=warning \
            RATE_LIMIT_ENABLED=false "${FACADE_BIN_DIR:-$after}/http-facade" >"$OUT/facade-$label-$round.log" 2>&1 &
        local facade=$!
        for _ in $(seq 1 100); do curl -sf "http://localhost:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
        "$bench" http --facade-url "http://localhost:$port" --amqp-url "$amqp" --database-url "$url" --jwt-secret "$secret" \
            --duration "$DURATION" --warmup "$WARMUP" --json --in-flight 8 --shape availability --showtimes 4 \
            --seats-per-showtime 2000 --no-verify >"$OUT/rest-$label-$round.json" 2>"$OUT/rest-$label-$round.err" \
            || echo "   rest: exit $? (see $OUT/rest-$label-$round.err)"
        kill "$facade"; wait "$facade" 2>/dev/null || true
        echo "round $round $label REST availability (8 in flight):   $(summary "$OUT/rest-$label-$round.json" availability)"
    fi
    if has mix; then
        "$bench" amqp "${common[@]}" --in-flight 64 --shape mix --showtimes 8 --seats-per-showtime 2000 \
            >"$OUT/mix-$label-$round.json" 2>"$OUT/mix-$label-$round.err" \
            || echo "   mix: exit $? (see $OUT/mix-$label-$round.err)"
        echo "round $round $label mix availability (64 in flight): $(summary "$OUT/mix-$label-$round.json" availability)"
        echo "round $round $label mix hold:                         $(summary "$OUT/mix-$label-$round.json" hold)"
    fi
    if has uniform; then
        "$bench" amqp "${common[@]}" --in-flight 64 --shape uniform --analyze \
            >"$OUT/uniform-$label-$round.json" 2>"$OUT/uniform-$label-$round.err" \
            || echo "   uniform: exit $? (see $OUT/uniform-$label-$round.err)"
        echo "round $round $label uniform hold (64 in flight):      $(summary "$OUT/uniform-$label-$round.json" hold)"
    fi
    if has hot; then
        "$bench" amqp "${common[@]}" --in-flight 1000 --shape hot --hot-seats 10 --showtimes 1 \
            --seats-per-showtime 100 --seats-per-hold 1-2 --timeout 10 \
            >"$OUT/hot-$label-$round.json" 2>"$OUT/hot-$label-$round.err" \
            || echo "   hot: exit $? (see $OUT/hot-$label-$round.err)"
        echo "round $round $label hot rush hold (1,000 in flight):  $(summary "$OUT/hot-$label-$round.json" hold)"
    fi
    kill "$core"; wait "$core" 2>/dev/null || true
    core=""
    dropdb --force "$db"; db=""
    rabbitmqctl delete_vhost "$vhost" >/dev/null; vhost=""
}

echo "read-path: before=$before after=$after DURATION=$DURATION ROUNDS=$ROUNDS ($(cut -d' ' -f1-3 /proc/loadavg))"
for round in $(seq 1 "$ROUNDS"); do
    run before "$before" "$round"
    run after "$after" "$round"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
