#!/usr/bin/env bash
# Two facades in one run (decision 0024): one core on a vhost and database of its own, the facade built from
# BEFORE (a directory holding an http-facade binary) and the one from AFTER in front of it, and inventory-bench
# alternating between them: uniform REST holds at IN_FLIGHT, then availability of 2,000-seat showtimes at 8 in
# flight, ROUNDS rounds of before, after. Per run: throughput, p50, p99, errors, and the facade's CPU per
# request (its utime+stime from /proc over the requests its /metrics counted, sampled every 0.5 s, over the
# DURATION seconds before the requests stopped). Both facades as deployed: AUTH_MODE=jwt, LOG_LEVEL=info (the access log on, to a file), rate
# limits off (the bench's users share one address).
#
#   BEFORE=/tmp/before AFTER=.build-release/release bench/facade-compare.sh
#       DURATION=10 WARMUP=2 IN_FLIGHT=64 ROUNDS=3 BIN=.build/release (the core and the bench)
#
# Needs the services of scripts/services.sh. Removes its vhost and database at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BIN:-$root/.build/release}
before=${BEFORE:?BEFORE=<directory with the old http-facade>}
after=${AFTER:-$bin}
DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} IN_FLIGHT=${IN_FLIGHT:-64} ROUNDS=${ROUNDS:-3}
id=facadecmp$$
vhost=$id database=$id
amqp="amqp://guest:guest@localhost:5672/$vhost"
dburl="postgresql://postgres:postgres@localhost:5432/$database"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    PGPASSWORD=postgres dropdb -h localhost -U postgres --if-exists --force "$database" 2>/dev/null || true
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
PGPASSWORD=postgres createdb -h localhost -U postgres "$database"
DATABASE_URL=$dburl "$bin/inventory-rpc" migrate >/dev/null

DATABASE_URL=$dburl RABBITMQ_URL=$amqp OPS_PORT=0 LOG_LEVEL=warning RPC_PERMISSIONS="guest=*,act-for-users,admin" \
    MAX_SEATS_PER_USER=0 "$bin/inventory-rpc" serve >"$out/core.log" 2>&1 &
pids+=($!)
base=$((20000 + RANDOM % 20000))
declare -A port ops pid
for which in before after; do
    dir=$before
    [ "$which" = after ] && dir=$after
    port[$which]=$base ops[$which]=$((base + 1))
    base=$((base + 2))
    RABBITMQ_URL=$amqp PORT=${port[$which]} FACADE_OPS_PORT=${ops[$which]} AUTH_MODE=jwt JWT_SECRET=$secret \
        LOG_LEVEL=info RATE_LIMIT_ENABLED=false "$dir/http-facade" >"$out/facade-$which.log" 2>&1 &
    pid[$which]=$!
    pids+=($!)
done
for which in before after; do
    ready=false
    for _ in $(seq 1 150); do
        if curl -sf "http://localhost:${port[$which]}/readyz" >/dev/null 2>&1; then ready=true; break; fi
        sleep 0.2
    done
    $ready || { echo "facade-compare: the $which facade never became ready" >&2; tail -5 "$out"/*.log >&2; exit 1; }
done

# CPU seconds of a process (utime + stime) and the requests a facade counted.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
requests() {
    curl -sf "http://localhost:$1/metrics" | awk '/^http_requests_total/ { n += $NF } END { printf "%d\n", n }'
}

echo "facade-compare: $(date -u +%FT%TZ), DURATION=$DURATION WARMUP=$WARMUP IN_FLIGHT=$IN_FLIGHT ROUNDS=$ROUNDS"
echo "facade-compare: before=$before/http-facade after=$after/http-facade"
echo "facade-compare: uptime at start: $(uptime)"
for round in $(seq 1 "$ROUNDS"); do
    for shape in uniform availability; do
        for which in before after; do
            args=(--in-flight "$IN_FLIGHT" --shape uniform)
            [ "$shape" = availability ] && args=(--in-flight 8 --shape availability --showtimes 4
                --seats-per-showtime 2000 --no-verify)
            # The facade's CPU time and request count every half second while the bench runs: the CPU per
            # request is taken over the DURATION seconds before the requests stopped (the measured window,
            # after provisioning, whose seat definitions are few requests of much CPU, and the warm-up).
            : >"$out/samples.txt"
            ( while :; do
                echo "$(date +%s.%N) $(cpu "${pid[$which]}") $(requests "${ops[$which]}")" >>"$out/samples.txt"
                sleep 0.5
            done ) &
            sampler=$!
            JWT_SECRET='' "$bin/inventory-bench" http --facade-url "http://localhost:${port[$which]}" \
                --amqp-url "$amqp" --database-url "$dburl" --jwt-secret "$secret" \
                --duration "$DURATION" --warmup "$WARMUP" "${args[@]}" --json >"$out/run.json"
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
            python3 - "$round" "$which" "$shape" "$out/run.json" "$out/samples.txt" "$DURATION" \
                "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
round_, which, shape, path, samples_path, duration, load = sys.argv[1:8]
samples = [tuple(float(x) for x in line.split()) for line in open(samples_path) if len(line.split()) == 3]
# The window ends when the requests stopped (the uniform run verifies afterwards, with no request).
end = next(s for s in samples if s[2] == samples[-1][2])
start = min((s for s in samples if s[0] >= end[0] - float(duration)), key=lambda s: s[0])
cpu0, req0, cpu1, req1 = start[1], start[2], end[1], end[2]
report = json.load(open(path))
operation = "hold" if shape == "uniform" else "availability"
for row in report["operations"]:
    if row["operation"] == operation:
        bad = row["error"] + row["timeout"]
        per = (cpu1 - cpu0) / max(1, req1 - req0) * 1e6
        print(f"round {round_} {shape:12} {which:6}: {row['throughputPerSecond']:8.1f}/s  p50 {row['p50Ms']:7.1f} ms  "
              f"p99 {row['p99Ms']:7.1f} ms  error+timeout {bad}  facade CPU {per:6.0f} us/request "
              f"({int(req1 - req0)} requests in the last {end[0] - start[0]:.1f} s)  load {load}")
PY
        done
    done
done
echo "facade-compare: uptime at end: $(uptime)"
for which in before after; do
    echo "facade-compare: $which facade peak RSS $(awk '/VmHWM/ { print $2, $3 }' "/proc/${pid[$which]}/status")"
done
