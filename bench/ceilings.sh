#!/usr/bin/env bash
# The ceilings and the service, measured in one run on this machine, printed as one table (text, then
# JSON in $OUT/ceilings.json):
#   pgbench      the core's hold SQL (bench/pgbench/hold.sql) on a scratch database, then the minimal durable
#                hold (bench/pgbench/minimal_hold.sql: insert hold, conditional update of one seat, insert
#                outbox row, commit) on a scratch database of its own: the honest ceiling (issue 16)
#   redis        redis-benchmark with the lock command's shape: SET lock:{...}:<random> v NX EX 300
#   echo         a null AMQP RPC through the project's AMQP layer (inventory-bench echo)
#   stub         the same SQL behind the same AMQP layer and nothing else (inventory-bench stub-core)
#   core         inventory-bench against inventory-rpc serve: uniform holds (as provisioned, then again with the
#                planner's statistics fresh: --analyze), a hot rush, availability of 2,000 seats, the mix,
#                best-available holds (1-4 seats together on 2,000-seat showtimes with rows)
#   sweep        100,000 holds expiring at once (inventory-bench sweep), the core sweeping every 5 s
#   http         inventory-bench against http-facade in front of the core (when it serves)
# and the ratios the targets are stated in (BENCHMARKS.md): hold throughput / pgbench rate, each against
# both pgbench rates (hold.sql, and the minimal hold, which every ratio is also given against).
#
#   bench/ceilings.sh                  # DURATION=10 IN_FLIGHT=64 PG_CLIENTS=8 SKIP_BUILD=0 OUT=.build/ceilings
#   CONFIG=debug SKIP_BUILD=1 bench/ceilings.sh     # the debug binaries (.build/debug), e.g. for a same-build
#                                                   # before/after on a machine where a release build is too dear
#
# Uses its own database(s) and RabbitMQ vhost, dropped afterwards; Redis keys go to db $REDIS_DB (default 9)
# and expire after 300 s. Never stops or flushes a shared service.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
IN_FLIGHT="${IN_FLIGHT:-64}"
CONNECTIONS="${CONNECTIONS:-2}"
PG_CLIENTS="${PG_CLIENTS:-8}"
REDIS_CLIENTS="${REDIS_CLIENTS:-8}"
REDIS_DB="${REDIS_DB:-9}"
PGHOST="${PGHOST:-localhost}" PGUSER="${PGUSER:-postgres}" PGPASSWORD="${PGPASSWORD:-postgres}"
export PGHOST PGUSER PGPASSWORD
AMQP_BASE="${AMQP_BASE:-amqp://guest:guest@localhost:5672}"
OUT="${OUT:-$root/.build/ceilings}"
STEPS="${STEPS:-pgbench redis echo stub core http sweep}"
SWEEP_HOLDS="${SWEEP_HOLDS:-100000}"
mkdir -p "$OUT"

CONFIG="${CONFIG:-release}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && swift build -c "$CONFIG" 2>&1 | tail -1)
fi
bin="$root/.build/$CONFIG"

id="$$$RANDOM"
pgdb="inv_ceil_pg_$id"
minimaldb="inv_ceil_min_$id"
coredb="inv_ceil_core_$id"
vhost="bench-ceil-$id"
amqp="$AMQP_BASE/$vhost"
coreurl="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:5432/$coredb"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    dropdb --if-exists --force "$pgdb" 2>/dev/null || true
    dropdb --if-exists --force "$minimaldb" 2>/dev/null || true
    dropdb --if-exists --force "$coredb" 2>/dev/null || true
    rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
}
trap cleanup EXIT

rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
rm -f "$OUT"/*.json "$OUT"/*.txt

has() { [[ " $STEPS " == *" $1 "* ]]; }
say() { echo "== $* ($(cut -d' ' -f1-3 /proc/loadavg))" >&2; }

# Peak resident memory (MB) of a process while a command runs.
with_rss() {
    local pid="$1" file="$2"; shift 2
    echo 0 >"$file"
    ( peak=0; while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status" 2>/dev/null || echo 0)
        (( rss > peak )) && peak=$rss && echo "$peak" >"$file"
        sleep 0.5
      done ) &
    local sampler=$!
    "$@"
    local status=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    return $status
}

pgbench_json() {  # pgbench's output file, name -> one JSON line
    python3 - "$1" "$2" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
tps = float(re.search(r"tps = ([0-9.]+)", text).group(1))
lat = re.search(r"latency average = ([0-9.]+) ms", text)
print(json.dumps({"name": sys.argv[2], "opsPerSecond": tps, "p50Ms": None,
                  "meanMs": float(lat.group(1)) if lat else None}))
EOF
}

if has pgbench; then
    say "pgbench: bench/pgbench/hold.sql, $PG_CLIENTS clients, ${DURATION}s"
    SEATS=200000 "$root/bench/pgbench/setup.sh" "$pgdb" >/dev/null
    pgbench -n -M prepared -c "$PG_CLIENTS" -j 2 -T "$DURATION" -f "$root/bench/pgbench/hold.sql" "$pgdb" >"$OUT/pgbench.txt" 2>&1
    pgbench_json "$OUT/pgbench.txt" "pgbench hold.sql" >"$OUT/pgbench.json"
    dropdb --force "$pgdb"
    say "pgbench: bench/pgbench/minimal_hold.sql (the minimal durable hold), $PG_CLIENTS clients, ${DURATION}s"
    SEATS=200000 "$root/bench/pgbench/minimal_setup.sh" "$minimaldb" >/dev/null
    pgbench -n -M prepared -c "$PG_CLIENTS" -j 2 -T "$DURATION" -f "$root/bench/pgbench/minimal_hold.sql" "$minimaldb" \
        >"$OUT/pgbench-minimal.txt" 2>&1
    pgbench_json "$OUT/pgbench-minimal.txt" "pgbench minimal_hold.sql" >"$OUT/pgbench-minimal.json"
    dropdb --force "$minimaldb"
fi

if has redis; then
    say "redis-benchmark: SET lock:{...}:__rand_int__ NX EX 300, $REDIS_CLIENTS clients"
    requests=$(( DURATION * 20000 ))
    redis-benchmark -h "${REDIS_HOST:-localhost}" -p "${REDIS_PORT:-6379}" --dbnum "$REDIS_DB" -n "$requests" \
        -c "$REDIS_CLIENTS" -r 1000000 --csv SET "lock:{bench-ceiling}:__rand_int__" "h_$id" NX EX 300 \
        >"$OUT/redis.txt" 2>&1
    python3 - "$OUT/redis.txt" >"$OUT/redis.json" <<'EOF'
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
header, row = rows[0], rows[-1]
d = dict(zip(header, row))
print(json.dumps({"name": "redis SET NX EX", "opsPerSecond": float(d["rps"]),
                  "p50Ms": float(d.get("p50_latency_ms", 0)), "p99Ms": float(d.get("p99_latency_ms", 0))}))
EOF
fi

if has echo; then
    say "echo: null AMQP RPC, $IN_FLIGHT in flight"
    "$bin/inventory-bench" echo --amqp-url "$amqp" --in-flight "$IN_FLIGHT" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --json >"$OUT/echo.json"
fi

# The service: a migrated scratch database (the core's own migrations, applied as setup.sh does, then
# `inventory-rpc migrate`, which finds nothing left to do once the core has landed).
if has stub || has core || has http || has sweep; then
    SEATS=1 "$root/bench/pgbench/setup.sh" "$coredb" >/dev/null
    DATABASE_URL="$coreurl" "$bin/inventory-rpc" migrate >"$OUT/migrate.log" 2>&1 || true
fi

run_bench() {  # name, pid to watch, bench arguments...
    local name="$1" pid="$2"; shift 2
    say "$name"
    with_rss "$pid" "$OUT/$name.rss" "$bin/inventory-bench" "$@" --json --database-url "$coreurl" \
        >"$OUT/$name.json" 2>"$OUT/$name.err" || echo "   $name: exit $? (see $OUT/$name.err)" >&2
}

serving() { "$bin/inventory-bench" ping --amqp-url "$amqp" --wait "$1" >/dev/null; }

if has stub; then
    "$bin/inventory-bench" stub-core --amqp-url "$amqp" --database-url "$coreurl" --workers 8 >"$OUT/stub.log" 2>&1 &
    stub=$!
    pids+=("$stub")
    serving 20
    run_bench stub-uniform "$stub" amqp --amqp-url "$amqp" --in-flight "$IN_FLIGHT" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --shape uniform
    kill "$stub"; wait "$stub" 2>/dev/null || true
fi

core_up=0
if has core || has http || has sweep; then
    # Every client of this run logs in as guest on its scratch vhost, which the core's default table grants
    # nothing (README, "Broker users"): grant it everything here (the core warns at start).
    DATABASE_URL="$coreurl" RABBITMQ_URL="$amqp" HOLD_TTL_SECONDS=300 EXPIRY_INTERVAL_SECONDS=5 OPS_PORT=0 LOG_LEVEL=warning \
        RPC_PERMISSIONS="guest=*,act-for-users,admin" MAX_SEATS_PER_USER="${MAX_SEATS_PER_USER:-0}" \
        "$bin/inventory-rpc" serve >"$OUT/core.log" 2>&1 &
    core=$!
    pids+=("$core")
    if serving 30; then core_up=1; else echo "   inventory-rpc serve does not answer ping.request: core rows skipped" >&2; fi
fi

if has core && (( core_up )); then
    common=(--amqp-url "$amqp" --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP")
    run_bench core-uniform "$core" amqp "${common[@]}" --in-flight "$IN_FLIGHT" --shape uniform
    run_bench core-uniform-analyzed "$core" amqp "${common[@]}" --in-flight "$IN_FLIGHT" --shape uniform --analyze
    run_bench core-hot "$core" amqp "${common[@]}" --in-flight 1000 --shape hot --hot-seats 10 --showtimes 1 \
        --seats-per-showtime 100 --seats-per-hold 1-2 --timeout 10
    run_bench core-availability "$core" amqp "${common[@]}" --in-flight 8 --shape availability --showtimes 4 \
        --seats-per-showtime 2000 --no-verify
    run_bench core-mix "$core" amqp "${common[@]}" --in-flight "$IN_FLIGHT" --shape mix --showtimes 8 \
        --seats-per-showtime 2000
    # Best available (issue 15): 1-4 seats together, rows of 20, winners release at once; next to plain holds.
    run_bench core-best-available "$core" amqp "${common[@]}" --in-flight "$IN_FLIGHT" --shape best-available \
        --showtimes 4 --seats-per-showtime 2000
fi

if has http && (( core_up )) && [[ -x "$bin/http-facade" ]]; then
    port=$(( 20000 + RANDOM % 20000 ))
    # Authentication on, as by default: a secret for this run; the bench signs a token per user with it.
    jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # Rate limits off: the benchmark's users all come from one address at rates no buyer reaches.
    RABBITMQ_URL="$amqp" PORT="$port" FACADE_OPS_PORT=0 AUTH_MODE=jwt JWT_SECRET="$jwt_secret" LOG_LEVEL=warning \
        RATE_LIMIT_ENABLED=false "$bin/http-facade" >"$OUT/facade.log" 2>&1 &
    facade=$!
    pids+=("$facade")
    for _ in $(seq 1 50); do curl -sf "http://localhost:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    run_bench http-uniform "$facade" http --facade-url "http://localhost:$port" --amqp-url "$amqp" \
        --jwt-secret "$jwt_secret" \
        --in-flight "$IN_FLIGHT" --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --shape uniform
    run_bench http-uniform-analyzed "$facade" http --facade-url "http://localhost:$port" --amqp-url "$amqp" \
        --jwt-secret "$jwt_secret" \
        --in-flight "$IN_FLIGHT" --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --shape uniform \
        --analyze
fi

if has sweep && (( core_up )); then
    say "sweep: $SWEEP_HOLDS holds expiring at once"
    "$bin/inventory-bench" sweep --amqp-url "$amqp" --database-url "$coreurl" --holds "$SWEEP_HOLDS" --wait 150 --json \
        >"$OUT/sweep.json" 2>"$OUT/sweep.err" || echo "   sweep: exit $?" >&2
fi

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name + ".json")
    try:
        return json.load(open(path))
    except Exception:
        return None
def rss(name):
    try:
        return int(open(os.path.join(out, name + ".rss")).read().strip() or 0)
    except Exception:
        return None
rows = []
pg = load("pgbench")
if pg: rows.append({"measure": "pgbench hold.sql (ceiling)", "op": "hold tx", "opsPerSecond": pg["opsPerSecond"],
                    "p50Ms": None, "p99Ms": None, "note": f"mean {pg['meanMs']} ms"})
pgmin = load("pgbench-minimal")
if pgmin: rows.append({"measure": "pgbench minimal hold (ceiling)", "op": "hold tx",
                       "opsPerSecond": pgmin["opsPerSecond"], "p50Ms": None, "p99Ms": None,
                       "note": f"mean {pgmin['meanMs']} ms"})
rd = load("redis")
if rd: rows.append({"measure": "redis SET NX EX (ceiling)", "op": "SET", "opsPerSecond": rd["opsPerSecond"],
                    "p50Ms": rd["p50Ms"], "p99Ms": rd["p99Ms"], "note": ""})
def bench_rows(name, label, ops):
    report = load(name)
    if not report: return
    for row in report["operations"]:
        if row["operation"] not in ops: continue
        verification = report.get("verification")
        note = f"won {row['won']} conflict {row['conflict']} error {row['error']} timeout {row['timeout']}"
        if verification is not None:
            note += "; verify " + ("OK" if not verification["violations"] else f"{len(verification['violations'])} VIOLATIONS")
        r = rss(name)
        if r and name != "echo": note += f"; peak RSS {r} MB"
        rows.append({"measure": label, "op": row["operation"], "opsPerSecond": row["throughputPerSecond"],
                     "p50Ms": row["p50Ms"], "p99Ms": row["p99Ms"], "p999Ms": row["p999Ms"], "maxMs": row["maxMs"],
                     "inFlight": report["inFlight"], "note": note, "load": report["load"]})
bench_rows("echo", "null AMQP RPC echo (ceiling)", {"echo"})
bench_rows("stub-uniform", "stub-core: SQL behind AMQP only", {"hold"})
bench_rows("core-uniform", "core, uniform", {"hold"})
bench_rows("core-uniform-analyzed", "core, uniform, fresh statistics", {"hold"})
bench_rows("core-hot", "core, hot rush (10 seats)", {"hold", "release"})
bench_rows("core-availability", "core, availability 2,000 seats", {"availability"})
bench_rows("core-mix", "core, mix", {"hold", "release", "purchase", "availability"})
bench_rows("core-best-available", "core, best available (1-4 together)", {"hold.best", "release"})
bench_rows("http-uniform", "facade (REST), uniform", {"hold"})
bench_rows("http-uniform-analyzed", "facade (REST), fresh statistics", {"hold"})
sw = load("sweep")
if sw:
    rows.append({"measure": f"core, sweep of {sw['holds']} holds", "op": "expire",
                 "opsPerSecond": round(sw["holds"] / sw["sweepDurationSeconds"], 1) if sw.get("sweepDurationSeconds") else 0,
                 "p50Ms": None, "p99Ms": None,
                 "note": f"sweep work {sw.get('sweepDurationSeconds')} s; all swept {sw.get('expiryToAllSweptSeconds')} s "
                         f"and all events {sw.get('expiryToAllEventsSeconds')} s after expiresAt"})
pgrate = pg["opsPerSecond"] if pg else None
minrate = pgmin["opsPerSecond"] if pgmin else None
ratios = {}
# Every ratio twice: against pgbench on the core's own hold SQL (as before issue 16), and against the
# minimal durable hold (the honest ceiling: the core can never beat its own SQL's pgbench rate by much).
for name, key in [("stub-uniform", "stub hold"), ("core-uniform", "AMQP hold"),
                  ("core-uniform-analyzed", "AMQP hold (fresh statistics)"),
                  ("http-uniform", "REST hold"),
                  ("http-uniform-analyzed", "REST hold (fresh statistics)")]:
    report = load(name)
    hold = next((r for r in report["operations"] if r["operation"] == "hold"), None) if report else None
    if hold and pgrate: ratios[key + " / pgbench"] = round(hold["throughputPerSecond"] / pgrate, 3)
    if hold and minrate: ratios[key + " / minimal pgbench"] = round(hold["throughputPerSecond"] / minrate, 3)
if pgrate and minrate:
    ratios["pgbench hold.sql / minimal pgbench"] = round(pgrate / minrate, 3)
def fmt(v, spec):
    return "-" if v is None else format(v, spec)
header = f"{'measure':<36} {'op':<13} {'in-fl':>5} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}  note"
print(header)
print("-" * len(header))
for r in rows:
    print(f"{r['measure']:<36} {r['op']:<13} {fmt(r.get('inFlight'), 'd'):>5} {r['opsPerSecond']:>10.1f} "
          f"{fmt(r['p50Ms'], '.2f'):>8} {fmt(r['p99Ms'], '.2f'):>8}  {r['note']}")
for key, value in ratios.items():
    print(f"ratio {key}: {value}")
load_now = open("/proc/loadavg").read().split()[:3]
print(f"load average at the end: {' '.join(load_now)} ({os.cpu_count()} cores)")
json.dump({"rows": rows, "ratios": ratios, "loadAtEnd": load_now, "cores": os.cpu_count()},
          open(os.path.join(out, "ceilings.json"), "w"), indent=2)
print(f"JSON: {os.path.join(out, 'ceilings.json')}")
EOF
