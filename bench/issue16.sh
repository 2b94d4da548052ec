#!/usr/bin/env bash
# Issue 16's table and targets, measured in ONE run on release builds, with every ratio the targets are
# stated in (the before/after of group commit in BENCHMARKS.md, "Issue 16: before and after"):
#   pgbench-hold      pgbench, the core's bench/pgbench/hold.sql, $PG_CLIENTS clients
#   pgbench-minimal   pgbench, the minimal durable hold (bench/pgbench/minimal_hold.sql), $PG_CLIENTS clients
#   echo              null AMQP RPC through the project's AMQP layer, 64 in flight
#   core-uniform      inventory-bench amqp, uniform holds, 64 in flight (rate, p50, p99), with the CPU each
#                     process group spent per hold (bench/proc_cpu.py: core, broker, the core's database
#                     backends, the WAL writer, redis, the bench)
#   core-hot          hot rush, 1,000 in flight on 10 seats (rate, p99, errors); the core's VmRSS (sampled)
#                     and VmHWM (peak, reset before the step through /proc/PID/clear_refs) at 1,000 in flight
#   core-availability availability of a 2,000-seat showtime, 8 in flight, over AMQP (p50)
#   http-uniform      REST uniform holds through http-facade, 64 in flight
#   http-availability availability of a 2,000-seat showtime, 8 in flight, over REST (p50)
#   http-hot          the same hot rush over REST, 1,000 in flight: the facade's (and the core's) memory
# Optional steps (STEPS="... profile sweep"):
#   profile           issue 16 item 7: a uniform AMQP run of its own (64 in flight, PROFILE_DURATION + 15 s
#                     measured) and inside it, for PROFILE_DURATION s: `perf record -g` on the core, the core's
#                     PostgreSQL backends and the WAL writer; the CPU per hold of each process group over the
#                     same window (bench/proc_cpu.py); pg_stat_user_functions before and after (the scratch
#                     database has track_functions = all); then perf report per process (self and inclusive
#                     symbols) in $OUT/profile/, and the summary's tables
#   sweep             100,000 holds expiring at once (inventory-bench sweep; the core runs with
#                     EXPIRY_INTERVAL_SECONDS=1, the issue's setting): long, a minute or more
# Every load step runs the benchmark's verifier (the availability steps too: nothing to find there but it
# checks the run's showtimes); the script exits 1 if any verification failed or any step did not run.
#
#   nice -n 19 /work/coord/sb "$PWD" bench/issue16.sh            # build (release, .build-release), measure
#   SKIP_BUILD=1 RUNS=3 bench/issue16.sh                          # three runs one after the other
#   STEPS=profile SKIP_BUILD=1 bench/issue16.sh                   # the profile only
#   STEPS="all sweep" ...                                         # everything and the 100,000-hold sweep
#
# Knobs: DURATION (10), WARMUP (3), PG_CLIENTS (8), CONNECTIONS (2: driver threads), BUILD_PATH
# (.build-release), BIN (its release dir), OUT (.build-release/issue16/<UTC time>), PROFILE_DURATION (10),
# SWEEP_HOLDS (100000), OUT_BASE (where RUNS>1 puts its runs), COMMIT (a name for the build, printed in
# run.txt). The summary: bench/issue16_report.py OUT (run at the end); runs side by side:
# bench/issue16_table.py OUT... Uses its own databases and RabbitMQ vhost, dropped at the end; never stops or
# flushes a shared service. Needs perf (linux-perf) and root or perf_event_paranoid <= 1 for `profile`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
PG_CLIENTS="${PG_CLIENTS:-8}"
CONNECTIONS="${CONNECTIONS:-2}"
PROFILE_DURATION="${PROFILE_DURATION:-10}"
SWEEP_HOLDS="${SWEEP_HOLDS:-100000}"
PGHOST="${PGHOST:-localhost}" PGUSER="${PGUSER:-postgres}" PGPASSWORD="${PGPASSWORD:-postgres}"
export PGHOST PGUSER PGPASSWORD
AMQP_BASE="${AMQP_BASE:-amqp://guest:guest@localhost:5672}"
BUILD_PATH="${BUILD_PATH:-$root/.build-release}"
BIN="${BIN:-$BUILD_PATH/release}"
RUNS="${RUNS:-1}"
all="pgbench-hold pgbench-minimal echo core-uniform core-hot core-availability http-uniform http-availability http-hot"
STEPS="${STEPS:-all}"
STEPS="${STEPS//all/$all}"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    start=$(date +%s)
    (cd "$root" && swift build -c release --build-path "$BUILD_PATH" 2>&1 | tail -3)
    echo "== release build: $(( $(date +%s) - start )) s" >&2
fi

if (( RUNS > 1 )); then
    status=0
    for run in $(seq 1 "$RUNS"); do
        echo "=== run $run of $RUNS" >&2
        OUT="${OUT_BASE:-$BUILD_PATH/issue16}/$(date -u +%Y%m%dT%H%M%SZ)" RUNS=1 SKIP_BUILD=1 "$0" || status=1
    done
    exit $status
fi

OUT="${OUT:-$BUILD_PATH/issue16/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
has() { [[ " $STEPS " == *" $1 "* ]]; }
say() {  # the run's JWT secret (HTTP steps) is not printed
    local text="$*"
    [[ -z "${jwt_secret:-}" ]] || text="${text//$jwt_secret/SECRET}"
    echo "== $(date -u +%H:%M:%S) $text (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

id="$$$RANDOM"
pgdb="inv_i16_pg_$id"
minimaldb="inv_i16_min_$id"
coredb="inv_i16_core_$id"
vhost="bench-i16-$id"
amqp="$AMQP_BASE/$vhost"
coreurl="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:5432/$coredb"
pids=()
failures=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    dropdb --if-exists --force "$pgdb" 2>/dev/null || true
    dropdb --if-exists --force "$minimaldb" 2>/dev/null || true
    dropdb --if-exists --force "$coredb" 2>/dev/null || true
    rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
}
trap cleanup EXIT

{
    echo "start: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "uptime: $(uptime)"
    # Inside /work/coord/sb git cannot read the worktree: pass COMMIT=$(git rev-parse --short HEAD) then.
    echo "commit: ${COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    echo "binaries: $BIN"
    echo "steps: $STEPS; DURATION=$DURATION WARMUP=$WARMUP PG_CLIENTS=$PG_CLIENTS CONNECTIONS=$CONNECTIONS"
} | tee "$OUT/run.txt" >&2

pgbench_json() {  # pgbench's output file, name -> one JSON line
    python3 - "$1" "$2" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
found = re.search(r"tps = ([0-9.]+)", text)
if not found:
    sys.exit(f"{sys.argv[2]}: no tps in pgbench's output")
tps = float(found.group(1))
lat = re.search(r"latency average = ([0-9.]+) ms", text)
print(json.dumps({"name": sys.argv[2], "opsPerSecond": tps, "meanMs": float(lat.group(1)) if lat else None}))
EOF
}

if has pgbench-hold; then
    say "pgbench: bench/pgbench/hold.sql, $PG_CLIENTS clients, ${DURATION}s"
    SEATS=200000 "$root/bench/pgbench/setup.sh" "$pgdb" >/dev/null
    pgbench -n -M prepared -c "$PG_CLIENTS" -j 2 -T "$DURATION" -f "$root/bench/pgbench/hold.sql" "$pgdb" \
        >"$OUT/pgbench-hold.txt" 2>&1
    pgbench_json "$OUT/pgbench-hold.txt" "pgbench hold.sql" >"$OUT/pgbench-hold.json" \
        || failures+=("pgbench-hold: no rate (see $OUT/pgbench-hold.txt)")
    dropdb --force "$pgdb"
fi
if has pgbench-minimal; then
    say "pgbench: bench/pgbench/minimal_hold.sql, $PG_CLIENTS clients, ${DURATION}s"
    SEATS=200000 "$root/bench/pgbench/minimal_setup.sh" "$minimaldb" >/dev/null
    pgbench -n -M prepared -c "$PG_CLIENTS" -j 2 -T "$DURATION" -f "$root/bench/pgbench/minimal_hold.sql" \
        "$minimaldb" >"$OUT/pgbench-minimal.txt" 2>&1
    pgbench_json "$OUT/pgbench-minimal.txt" "pgbench minimal_hold.sql" >"$OUT/pgbench-minimal.json" \
        || failures+=("pgbench-minimal: no rate (see $OUT/pgbench-minimal.txt)")
    dropdb --force "$minimaldb"
fi

rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null

if has echo; then
    say "echo: null AMQP RPC, 64 in flight"
    "$BIN/inventory-bench" echo --amqp-url "$amqp" --in-flight 64 --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --json >"$OUT/echo.json" 2>"$OUT/echo.err" \
        || failures+=("echo: exit $?")
fi

# Memory of a process during a command: VmHWM reset first (clear_refs 5), VmRSS sampled every 0.2 s,
# both written to FILE as JSON at the end.
with_memory() {
    local pid="$1" file="$2"; shift 2
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    ( peak=0; while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        (( rss > peak )) && peak=$rss && echo "$peak" >"$file.peak"
        sleep 0.2
      done ) &
    local sampler=$! status=0
    "$@" || status=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local hwm rss
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    printf '{"vmRSSPeakSampledKB": %s, "vmHWMKB": %s, "vmRSSAfterKB": %s}\n' \
        "$(cat "$file.peak" 2>/dev/null || echo 0)" "${hwm:-0}" "${rss:-0}" >"$file"
    return $status
}

# CPU per process group inside the bench's measured window: the first snapshot half a second after the
# warm-up ends (the bench says on its stderr when it starts running), the second SECONDS later (3 s less
# than the measured seconds), so that neither the warm-up nor the verification falls inside the window
# however slow the snapshots are on a loaded machine. proc_cpu.py counts the window's holds as the
# measured rate times the window's own length.
cpu_window() {  # name, bench stderr file, bench pid, seconds
    local name="$1" err="$2" bench="$3" seconds="$4"; shift 4
    for _ in $(seq 1 3000); do
        grep -q "^running: warm-up" "$err" 2>/dev/null && break
        kill -0 "$bench" 2>/dev/null || return 0
        sleep 0.1
    done
    sleep "$WARMUP"
    sleep 0.5
    local groups=(--group "core=$core" --group "bench=$bench" --group "facade=${facade:-}" --database "$coredb")
    python3 "$here/proc_cpu.py" snap "$OUT/$name.cpu-before.json" "${groups[@]}"
    sleep "$seconds"
    python3 "$here/proc_cpu.py" snap "$OUT/$name.cpu-after.json" "${groups[@]}"
}

run_bench() {  # name, pid whose memory to watch (or ""), bench arguments...
    local name="$1" watch="$2"; shift 2
    say "$name: inventory-bench $*"
    local status=0
    if [[ -n "$watch" ]]; then
        with_memory "$watch" "$OUT/$name.mem" "$BIN/inventory-bench" "$@" --json --database-url "$coreurl" \
            >"$OUT/$name.json" 2>"$OUT/$name.err" || status=$?
    else
        "$BIN/inventory-bench" "$@" --json --database-url "$coreurl" >"$OUT/$name.json" 2>"$OUT/$name.err" \
            || status=$?
    fi
    if (( status )); then failures+=("$name: exit $status (see $OUT/$name.err)"); echo "   $name: exit $status" >&2; fi
}

# Like run_bench, with the CPU window beside it.
run_bench_cpu() {  # name, bench arguments...
    local name="$1"; shift
    say "$name: inventory-bench $*"
    "$BIN/inventory-bench" "$@" --json --database-url "$coreurl" >"$OUT/$name.json" 2>"$OUT/$name.err" &
    local bench=$!
    cpu_window "$name" "$OUT/$name.err" "$bench" "$(( DURATION > 4 ? DURATION - 3 : 1 ))"
    local status=0
    wait "$bench" || status=$?
    if (( status )); then failures+=("$name: exit $status (see $OUT/$name.err)"); echo "   $name: exit $status" >&2; fi
}

needs_core=0
for step in core-uniform core-hot core-availability http-uniform http-availability http-hot profile sweep; do
    has "$step" && needs_core=1
done
core=""
facade=""
if (( needs_core )); then
    # The core's migrations as bench/pgbench/setup.sh applies them, then `inventory-rpc migrate` (nothing left).
    SEATS=1 "$root/bench/pgbench/setup.sh" "$coredb" >/dev/null
    DATABASE_URL="$coreurl" "$BIN/inventory-rpc" migrate >"$OUT/migrate.log" 2>&1 || true
    # Per-function calls and times (pg_stat_user_functions) for the profile step: two clock reads per
    # function call, before and after alike. Sessions read the setting when they connect: before the core.
    psql -q -d "$coredb" -c "ALTER DATABASE $coredb SET track_functions = 'all'"
    # Every client logs in as guest on the scratch vhost: RPC_PERMISSIONS grants it everything there.
    # MAX_SEATS_PER_USER=0: the simulated users hold without releasing. EXPIRY_INTERVAL_SECONDS=1: the
    # issue's setting for the sweep (holds live 300 s, so nothing expires during the other steps).
    DATABASE_URL="$coreurl" RABBITMQ_URL="$amqp" HOLD_TTL_SECONDS=300 EXPIRY_INTERVAL_SECONDS=1 OPS_PORT=0 \
        LOG_LEVEL=warning RPC_PERMISSIONS="guest=*,act-for-users,admin" MAX_SEATS_PER_USER=0 \
        "$BIN/inventory-rpc" serve >"$OUT/core.log" 2>&1 &
    core=$!
    pids+=("$core")
    if ! "$BIN/inventory-bench" ping --amqp-url "$amqp" --wait 60 >/dev/null; then
        echo "inventory-rpc serve does not answer ping.request (see $OUT/core.log)" >&2
        exit 1
    fi
fi

common=(--amqp-url "$amqp" --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP")
rush=(--shape hot --hot-seats 10 --showtimes 1 --seats-per-showtime 100 --seats-per-hold 1-2 --timeout 10)
availability=(--in-flight 8 --shape availability --showtimes 4 --seats-per-showtime 2000)

has core-uniform && run_bench_cpu core-uniform amqp "${common[@]}" --in-flight 64 --shape uniform
has core-hot && run_bench core-hot "$core" amqp "${common[@]}" --in-flight 1000 "${rush[@]}"
has core-availability && run_bench core-availability "" amqp "${common[@]}" "${availability[@]}"

if has http-uniform || has http-availability || has http-hot; then
    port=$(python3 "$root/scripts/free_ports.py" 1) # below the ephemeral range
    jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # Authentication on (HS256, a token per simulated user); rate limits off and the per-address connection
    # limit above 1,000: every simulated buyer comes from this one address. RPC_TIMEOUT_MS=10000: the bench's
    # own timeout for the rush, and seats.define of 4,000 seats through the facade on a loaded machine.
    RABBITMQ_URL="$amqp" PORT="$port" FACADE_OPS_PORT=0 AUTH_MODE=jwt JWT_SECRET="$jwt_secret" LOG_LEVEL=warning \
        RATE_LIMIT_ENABLED=false HTTP_MAX_CONNECTIONS_PER_ADDRESS=4096 RPC_TIMEOUT_MS=10000 "$BIN/http-facade" >"$OUT/facade.log" 2>&1 &
    facade=$!
    pids+=("$facade")
    for _ in $(seq 1 300); do curl -sf "http://localhost:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    http=(--facade-url "http://localhost:$port" --jwt-secret "$jwt_secret" "${common[@]}")
    has http-uniform && run_bench_cpu http-uniform http "${http[@]}" --in-flight 64 --shape uniform
    has http-availability && run_bench http-availability "" http "${http[@]}" "${availability[@]}"
    if has http-hot; then
        # The core's memory is watched beside the facade's (a second sampler on the core).
        echo 5 >"/proc/$core/clear_refs" 2>/dev/null || true
        run_bench http-hot "$facade" http "${http[@]}" --in-flight 1000 "${rush[@]}"
        awk '/^VmHWM/ { printf "{\"vmHWMKB\": %s}\n", $2 }' "/proc/$core/status" >"$OUT/http-hot.core-mem" || true
    fi
fi

# Issue 16 item 7: perf on the core and its database backends during a uniform run of its own (fresh
# showtimes), the CPU counters over the same window, pg_stat_user_functions around it. The slow parts (the
# pids to record, the function statistics) run during the warm-up; the bench measures 15 s longer than
# perf records, so the window stays inside the measured seconds even when a loaded machine delays its start.
profile_targets() {  # the core and its PostgreSQL backends and WAL writer, comma-separated
    python3 - "$coredb" "$core" <<'EOF'
import os, sys
database, core = sys.argv[1], sys.argv[2]
pids = [core]
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    words = cmd.split()
    if cmd.startswith("postgres:") and (("walwriter" in cmd) or (len(words) >= 4 and words[3] == database)):
        pids.append(entry)
print(",".join(pids))
EOF
}
functions() {  # the core database's function statistics (track_functions = all), as tab-separated rows
    psql -qAtX -F $'\t' -d "$coredb" -c "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions" \
        >"$1" 2>/dev/null || true
}
if has profile; then
    mkdir -p "$OUT/profile"
    name=profile-uniform
    say "$name: inventory-bench amqp, uniform, 64 in flight, perf record ${PROFILE_DURATION}s"
    "$BIN/inventory-bench" amqp --amqp-url "$amqp" --connections "$CONNECTIONS" --duration "$(( PROFILE_DURATION + 15 ))" \
        --warmup "$WARMUP" --in-flight 64 --shape uniform --json --database-url "$coreurl" \
        >"$OUT/$name.json" 2>"$OUT/$name.err" &
    bench=$!
    for _ in $(seq 1 3000); do
        grep -q "^running: warm-up" "$OUT/$name.err" 2>/dev/null && break
        kill -0 "$bench" 2>/dev/null || break
        sleep 0.1
    done
    began=$(date +%s.%N)
    targets=$(profile_targets)
    echo "$targets" >"$OUT/profile/pids.txt"
    functions "$OUT/profile/functions-before.tsv"
    python3 -c "import sys, time; time.sleep(max(0.5, float(sys.argv[1]) + 0.5 - (time.time() - float(sys.argv[2]))))" \
        "$WARMUP" "$began"
    groups=(--group "core=$core" --group "bench=$bench" --group "facade=${facade:-}" --database "$coredb")
    python3 "$here/proc_cpu.py" snap "$OUT/$name.cpu-before.json" "${groups[@]}"
    # A backend in the list may have ended meanwhile (a short-lived connection): perf then refuses to
    # start ("No such process"); the list is taken again and perf tried again, at most three times.
    for attempt in 1 2 3; do
        if perf record -g -e cpu-clock -F 999 -p "$targets" -o "$OUT/profile/perf.data" -- sleep "$PROFILE_DURATION" \
            >"$OUT/profile/perf-record.log" 2>&1; then
            break
        fi
        echo "   perf record: attempt $attempt failed ($(head -n 1 "$OUT/profile/perf-record.log"))" >&2
        targets=$(profile_targets)
        echo "$targets" >"$OUT/profile/pids.txt"
    done
    python3 "$here/proc_cpu.py" snap "$OUT/$name.cpu-after.json" "${groups[@]}"
    functions "$OUT/profile/functions-after.tsv"
    status=0
    wait "$bench" || status=$?
    if (( status )); then failures+=("$name: exit $status (see $OUT/$name.err)"); echo "   $name: exit $status" >&2; fi
    if [[ -s "$OUT/profile/perf.data" ]]; then
        demangle() { if command -v swift >/dev/null; then swift demangle --simplified --compact; else cat; fi; }
        # Percentages of each process's own samples (--percentage relative with a filter). Self time per
        # symbol, and for PostgreSQL also the inclusive time (--children: planner, executor, plpgsql, SQL
        # functions, commit). PostgreSQL's binary is stripped: only its exported functions have names.
        report=(perf report -i "$OUT/profile/perf.data" --stdio --percentage relative -g none)
        "${report[@]}" --no-children --sort comm,dso --percent-limit 0.5 >"$OUT/profile/by-process.txt" 2>/dev/null || true
        "${report[@]}" --no-children --pid "$core" --sort dso --percent-limit 0.5 \
            >"$OUT/profile/core-dso.txt" 2>/dev/null || true
        "${report[@]}" --no-children --pid "$core" --sort dso,sym --percent-limit 0.5 2>/dev/null | demangle \
            >"$OUT/profile/core-symbols.txt" || true
        "${report[@]}" --children --pid "$core" --sort sym --percent-limit 3 2>/dev/null | demangle \
            >"$OUT/profile/core-inclusive.txt" || true
        "${report[@]}" --no-children --comm postgres --sort dso,sym --percent-limit 0.5 \
            >"$OUT/profile/postgres-symbols.txt" 2>/dev/null || true
        "${report[@]}" --children --comm postgres --sort sym --percent-limit 2 \
            >"$OUT/profile/postgres-inclusive.txt" 2>/dev/null || true
    fi
fi

if has sweep; then
    say "sweep: $SWEEP_HOLDS holds expiring at once (EXPIRY_INTERVAL_SECONDS=1)"
    "$BIN/inventory-bench" sweep --amqp-url "$amqp" --database-url "$coreurl" --holds "$SWEEP_HOLDS" --wait 150 \
        --json >"$OUT/sweep.json" 2>"$OUT/sweep.err" || failures+=("sweep: exit $?")
fi

echo "end: $(date -u +%Y-%m-%dT%H:%M:%SZ); uptime: $(uptime)" | tee -a "$OUT/run.txt" >&2
printf '%s\n' "${failures[@]}" >"$OUT/failures.txt"
python3 "$here/issue16_report.py" "$OUT" | tee "$OUT/summary.txt"
status=${PIPESTATUS[0]}
(( ${#failures[@]} == 0 )) || { printf 'FAILED: %s\n' "${failures[@]}" >&2; exit 1; }
exit "$status"
