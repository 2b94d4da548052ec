#!/usr/bin/env bash
# The hostile-traffic run (issue 14 item 7): normal buyers (`inventory-bench http` with tokens) measured
# twice in one run, first alone, then while bench/hostile.py attacks: a bot holding under many user ids,
# one user hammering POST /hold, slowloris connections to the facade and a WebSocket subscribe flood to
# the gateway. Prints the buyers' hold throughput and p99 both ways, the ratios against the issue's
# targets (at least 70 % of the throughput, p99 under 3x), what each attack did, and the availability
# requests the core answered meanwhile, then verifies the attack phase's showtimes in the database. Reports
# numbers; it does not judge them (exit 0 unless the verification fails or
# something fails to run).
#
#   bench/hostile.sh                    # the full run (release build): DURATION=20 per phase
#   SHORT=1 bench/hostile.sh            # the smoke version, under a minute: small venue, 5 s phases,
#                                       # 8 + 8 holders and 1 flooder (still 1,000 slowloris connections)
#   BIN=.build/debug SHORT=1 bench/hostile.sh
#
# Knobs (environment): BIN (.build/release), DURATION, WARMUP, IN_FLIGHT (buyers' requests in flight), SHAPE,
# SHOWTIMES, SEATS (per showtime), BOTS (user ids), BOT_CONCURRENCY, HAMMER_CONCURRENCY, SLOWLORIS
# (connections, 1000), WS_FLOODERS, SEED, ATTACKS (a comma-separated subset of bot,hammer,slowloris,wsflood:
# which attack costs the buyers what). Needs the services of scripts/services.sh (PostgreSQL, Redis,
# RabbitMQ on their standard ports) and python3 (standard library only). Every process runs on a vhost
# and database of its own, as guest (RPC_PERMISSIONS grants it all there), with the configuration's
# defaults otherwise: whatever limits the build has are what the attack meets. Removes everything at
# the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BIN:-$root/.build/release}
if [ -n "${SHORT:-}" ]; then
    # Smaller and gentler: it runs inside the test command, beside other tests on the same cores.
    DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} SHOWTIMES=${SHOWTIMES:-2} SEATS=${SEATS:-2000} IN_FLIGHT=${IN_FLIGHT:-64}
    BOT_CONCURRENCY=${BOT_CONCURRENCY:-8} HAMMER_CONCURRENCY=${HAMMER_CONCURRENCY:-8} WS_FLOODERS=${WS_FLOODERS:-1}
else
    DURATION=${DURATION:-20} WARMUP=${WARMUP:-3} SHOWTIMES=${SHOWTIMES:-10} SEATS=${SEATS:-10000}
fi
IN_FLIGHT=${IN_FLIGHT:-200} BOTS=${BOTS:-1000} BOT_CONCURRENCY=${BOT_CONCURRENCY:-16}
HAMMER_CONCURRENCY=${HAMMER_CONCURRENCY:-16} SLOWLORIS=${SLOWLORIS:-1000} WS_FLOODERS=${WS_FLOODERS:-4}
SEED=${SEED:-14} SHAPE=${SHAPE:-hot} HOT_FRACTION=${HOT_FRACTION:-0} ATTACKS=${ATTACKS:-bot,hammer,slowloris,wsflood}
# The attackers' CPU priority (nice). On a real on-sale the bots bring their own machines; here they share
# the service's two cores, and a Python flooder writing 240,000 frames a second takes most of one. 0 makes
# them compete as equals (what the attack costs the service plus what the attackers' own CPU costs it).
ATTACK_NICE=${ATTACK_NICE:-0}
for program in inventory-rpc http-facade realtime-gateway inventory-bench; do
    [ -x "$bin/$program" ] || { echo "hostile: $bin/$program is missing (build first, or set BIN)" >&2; exit 1; }
done

id=hostile$$
vhost=$id database=$id
amqp="amqp://guest:guest@localhost:5672/$vhost"
dburl="postgresql://postgres:postgres@localhost:5432/$database"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
out=$(mktemp -d)
pids=()
attack_pid=

cleanup() {
    if [ -n "$attack_pid" ]; then kill -TERM "$attack_pid" 2>/dev/null || true; fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}" $attack_pid; do wait "$pid" 2>/dev/null || true; done
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    PGPASSWORD=postgres dropdb -h localhost -U postgres --if-exists --force "$database" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
PGPASSWORD=postgres createdb -h localhost -U postgres "$database"
export RPC_PERMISSIONS="guest=*,act-for-users,admin"
DATABASE_URL=$dburl LOG_LEVEL=warning "$bin/inventory-rpc" migrate >/dev/null

# Ports below the ephemeral range (scripts/free_ports.py): a kernel-chosen free port, released, could be
# taken by any outgoing connection before the process bound it.
read -r ops_port facade_port ws_port facade_ops_port < <(python3 "$root/scripts/free_ports.py" 4)
DATABASE_URL=$dburl RABBITMQ_URL=$amqp OPS_PORT=$ops_port LOG_LEVEL=warning \
    "$bin/inventory-rpc" serve >"$out/core.log" 2>&1 &
pids+=($!)
# The facade behind a trusted proxy (127.0.0.1, where the buyers come from, each with an X-Forwarded-For
# of its own); the attackers come from source addresses of their own (127.0.0.x, every one of them the
# loopback interface's), not through the proxy. Its limits otherwise as configured by default.
TRUSTED_PROXIES=127.0.0.1 RABBITMQ_URL=$amqp PORT=$facade_port FACADE_OPS_PORT=$facade_ops_port \
    JWT_SECRET=$secret LOG_LEVEL=warning \
    "$bin/http-facade" >"$out/facade.log" 2>&1 &
pids+=($!)
RABBITMQ_URL=$amqp WS_PORT=$ws_port WS_HOST=127.0.0.1 LOG_LEVEL=warning \
    "$bin/realtime-gateway" >"$out/gateway.log" 2>&1 &
pids+=($!)
for url in "http://localhost:$facade_port/readyz" "http://127.0.0.1:$ws_port/readyz"; do
    ready=false
    for _ in $(seq 1 300); do
        if curl -sf "$url" >/dev/null 2>&1; then ready=true; break; fi
        sleep 0.2  # a bounded poll of the readiness endpoint
    done
    $ready || { echo "hostile: $url never became ready" >&2; cat "$out"/*.log >&2; exit 1; }
done

snapshot_requests() {
    curl -sf "http://127.0.0.1:$ws_port/metrics" | awk '
        /^realtime_gateway_snapshot_requests_total/ { sum += $NF }
        END { printf "%d\n", sum }'
}

# What the facade's and the gateway's limits refused: "name{labels} value" per line, summed over labels
# other than the one named.
limits_met() {
    {
        curl -sf "http://127.0.0.1:$facade_ops_port/metrics" | awk '/^facade_rate_limited_total\{/ { print }'
        curl -sf "http://127.0.0.1:$facade_ops_port/metrics" | awk '/^(facade_)?http_connections_refused_total/ { print }'
        curl -sf "http://127.0.0.1:$ws_port/metrics" | awk '/^realtime_gateway_clients_dropped_total/ { print }'
        curl -sf "http://127.0.0.1:$ws_port/metrics" | awk '/^realtime_gateway_connections_refused_total/ { print }'
    } || true
}

availability_requests() {
    curl -sf "http://127.0.0.1:$ops_port/metrics" | awk '
        /^inventory_rpc_requests_total\{/ && /operation="availability.request"/ { sum += $NF }
        END { printf "%d\n", sum }'
}

# One phase of the buyers: a fresh run id (fresh showtimes), its JSON report in $out/$1.json.
buyers() {
    local phase=$1 run=$2 status=0 verify=()
    # The attack phase's showtimes are still under attack when the buyers stop: its events and rows are
    # checked once the attackers have stopped (`inventory-bench verify` below), not by the buyers' verifier,
    # whose snapshot would race the bot's holds.
    [ "$phase" = attack ] && verify=(--no-verify)
    JWT_SECRET='' "$bin/inventory-bench" http --facade-url "http://localhost:$facade_port" --amqp-url "$amqp" \
        --database-url "$dburl" --jwt-secret "$secret" --run-id "$run" --in-flight "$IN_FLIGHT" \
        --duration "$DURATION" --warmup "$WARMUP" --showtimes "$SHOWTIMES" --seats-per-showtime "$SEATS" \
        --shape "$SHAPE" --hot-fraction "$HOT_FRACTION" --forwarded-for-per-user --buyer-per-hold "${verify[@]}" --json >"$out/$phase.json" 2>"$out/$phase.err" || status=$?
    echo "$status" >"$out/$phase.status"
}

echo "hostile: $(date -u +%FT%TZ) BIN=$bin DURATION=$DURATION WARMUP=$WARMUP IN_FLIGHT=$IN_FLIGHT SHAPE=$SHAPE HOT_FRACTION=$HOT_FRACTION SHOWTIMES=$SHOWTIMES SEATS=$SEATS"
echo "hostile: buyers: $IN_FLIGHT in flight, a new buyer (user id and X-Forwarded-For of its own, through the trusted proxy 127.0.0.1) for every hold and its release; attackers from 127.0.0.11 (bot), .12 (hammer), .13 (slowloris), .14 (wsflood), .15 (probe)"
echo "hostile: attack: ATTACKS=$ATTACKS BOTS=$BOTS x $BOT_CONCURRENCY in flight, HAMMER_CONCURRENCY=$HAMMER_CONCURRENCY, SLOWLORIS=$SLOWLORIS, WS_FLOODERS=$WS_FLOODERS, SEED=$SEED, ATTACK_NICE=$ATTACK_NICE"
echo "hostile: uptime at start: $(uptime)"

buyers calm "${id}-calm"

attack_run="${id}-attack"
showtimes=$(seq -s, -f "${attack_run}-st%g" 0 $((SHOWTIMES - 1)))
before=$(availability_requests) snapshots_before=$(snapshot_requests)
limits_met >"$out/limits-before.txt"
nice -n "$ATTACK_NICE" python3 "$root/bench/hostile.py" --facade "127.0.0.1:$facade_port" --gateway "127.0.0.1:$ws_port" \
    --secret "$secret" --showtimes "$showtimes" --seats "$SEATS" --bots "$BOTS" \
    --bot-concurrency "$BOT_CONCURRENCY" --hammer-concurrency "$HAMMER_CONCURRENCY" --slowloris "$SLOWLORIS" \
    --ws-flooders "$WS_FLOODERS" --seed "$SEED" --attacks "$ATTACKS" --report "$out/attack-report.json" \
    --bot-source 127.0.0.11 --hammer-source 127.0.0.12 --slowloris-source 127.0.0.13 --ws-source 127.0.0.14 \
    --probe-source 127.0.0.15 \
    >/dev/null 2>"$out/attack.err" &
attack_pid=$!
# The attackers print one line once every one of them has started.
for _ in $(seq 1 100); do
    grep -q "attackers started" "$out/attack.err" 2>/dev/null && break
    sleep 0.1  # a bounded poll of the attackers' start line
done
buyers attack "$attack_run"
kill -TERM "$attack_pid"
wait "$attack_pid" || true
attack_pid=
# What the attack phase left in the database, checked now that nothing writes to it: no seat in two live
# holds, none sold twice, seat rows and outbox consistent with the holds.
verified=0
DATABASE_URL=$dburl "$bin/inventory-bench" verify --showtime-prefix "$attack_run-" >"$out/verify.txt" 2>&1 || verified=$?
after=$(availability_requests) snapshots_after=$(snapshot_requests)
limits_met >"$out/limits-after.txt"
echo "hostile: uptime at end: $(uptime)"

python3 - "$out" "$((after - before))" "$((snapshots_after - snapshots_before))" <<'PY'
import json, os, sys
out, availability, snapshots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def hold(phase):
    path = os.path.join(out, phase + ".json")
    status = open(os.path.join(out, phase + ".status")).read().strip()
    try:
        report = json.load(open(path))
    except Exception:
        print(f"hostile: the {phase} phase produced no report (exit {status}):")
        print(open(os.path.join(out, phase + ".err")).read()[-2000:])
        sys.exit(1)
    row = next(r for r in report["operations"] if r["operation"] == "hold")
    verification = report.get("verification") or {}
    for violation in (verification.get("violations") or [])[:3]:
        print(f"hostile: {phase} phase, verifier: {violation}")
    return row, status

calm, calm_status = hold("calm")
attack, attack_status = hold("attack")
for name, row, status in (("alone", calm, calm_status), ("attacked", attack, attack_status)):
    bad = row["error"] + row["timeout"]
    print(f"buyers {name:9}: hold {row['throughputPerSecond']:8.1f}/s  p50 {row['p50Ms']:7.1f} ms  "
          f"p99 {row['p99Ms']:7.1f} ms  won {row['won']}  conflict {row['conflict']}  "
          f"error+timeout {bad} {row['errorCodes'] or ''}  (bench exit {status})")
throughput = attack["throughputPerSecond"] / max(calm["throughputPerSecond"], 1e-9)
p99 = attack["p99Ms"] / max(calm["p99Ms"], 1e-9)
print(f"buyers under attack: {100 * throughput:.0f} % of their throughput (target >= 70 %), "
      f"p99 {p99:.2f}x (target < 3x)")
try:
    report = json.load(open(os.path.join(out, "attack-report.json")))
    for attack_name, counts in sorted(report["attacks"].items()):
        print(f"attack {attack_name:9}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"attack rates: {report['rates']}; peak slowloris connections open: "
          f"{report['peaks'].get('slowloris_open', 0)}")
    print(f"probe: a new WebSocket subscriber's first snapshot during the attack: "
          f"{report.get('probe_first_snapshot_ms', 'none arrived')}")
except Exception as error:
    print(f"hostile: no attack report ({error})")
def metrics(name):
    values = {}
    for line in open(os.path.join(out, name)):
        key, _, value = line.rpartition(" ")
        if key:
            values[key] = float(value)
    return values

before_limits, after_limits = metrics("limits-before.txt"), metrics("limits-after.txt")
met = {key: int(value - before_limits.get(key, 0)) for key, value in sorted(after_limits.items())}
met = {key: value for key, value in met.items() if value}
print("limits met during the attack phase: " + (", ".join(f"{k} {v}" for k, v in met.items()) or "none counted"))
print(f"core: {availability} availability requests answered during the attack phase "
      f"({snapshots} of them the gateway's snapshots; the rest the bot's reads, and the buyers' with SHAPE=mix)")
PY
echo "attack phase's showtimes after the attack (inventory-bench verify, exit $verified):"
sed 's/^/  /' "$out/verify.txt"
[ "$verified" = 0 ] || exit 1
