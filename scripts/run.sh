#!/usr/bin/env bash
# The README's run command: services up, build, migrate, then the core, the REST facade and the realtime
# gateway together, their logs on this terminal. Ctrl-C (or SIGTERM to this script) stops all three; the
# script exits 0 when all stopped cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
# Release builds (issue 16): what the benchmarks measure, and several times faster than debug. The first
# release build of a clone takes a while (README); later ones are incremental. BUILD_CONFIGURATION=debug
# runs the debug build instead (e.g. next to `swift test`, which builds debug anyway).
configuration=${BUILD_CONFIGURATION:-release}
swift build -c "$configuration"
bin=$(swift build -c "$configuration" --show-bin-path)
"$bin/inventory-rpc" migrate

# Authentication is on by default (AUTH_MODE=jwt). Unless a key is configured (environment, .env.local or
# .env), the demo uses a development secret made on first run: .dev/jwt-secret, readable by its owner
# only, kept out of git.
configured() { [ -n "${!1:-}" ] || grep -qs "^$1=." .env.local .env; }
if [ "${AUTH_MODE:-jwt}" != none ] && ! configured JWT_SECRET && ! configured JWT_PUBLIC_KEY_FILE; then
    secret_file=.dev/jwt-secret
    if [ ! -s "$secret_file" ]; then
        mkdir -p .dev
        chmod 700 .dev
        (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_' >"$secret_file")
        echo "run.sh: made a development JWT secret in $secret_file (mode 0600)" >&2
    fi
    JWT_SECRET=$(cat "$secret_file")
    export JWT_SECRET
fi

# Ready-to-paste tokens (12 hours) for the README's curl examples; `http-facade token` mints others.
print_tokens() {
    configured JWT_SECRET || return 0
    local mint=("$bin/http-facade" token --ttl 43200)
    echo "run.sh: development tokens (http-facade token --sub USER --scope \"SCOPES\" mints others):"
    echo "export TOKEN=$("${mint[@]}" --sub user_456)          # user_456"
    echo "export TOKEN_B=$("${mint[@]}" --sub user_789)        # user_789, a second user"
    echo "export ORDERS_TOKEN=$("${mint[@]}" --sub orders-service --scope inventory:purchase)  # Orders Service"
    echo "export ADMIN_TOKEN=$("${mint[@]}" --sub ops-admin --scope inventory:admin)          # admin"
}
# The seat map page (issue 17, decision 0020): the facade serves web/ at / (WEB_ROOT). Its demo sign-in
# needs the development token endpoint, which exists only when DEV_TOKEN_ENDPOINT=true: this script turns it
# on for the facade it starts (unless DEV_TOKEN_ENDPOINT is configured either way, AUTH_MODE=none, or tokens
# are verified with a public key, which cannot sign), and says so loudly. It answers loopback callers only.
setting() {
    local value=${!1:-}
    [ -n "$value" ] || value=$(sed -n "s/^$1=//p" .env.local .env 2>/dev/null | head -n 1 | tr -d "\"'")
    printf '%s' "${value:-$2}"
}
facade_port=$(setting PORT 3005)
gateway_port=$(setting WS_PORT 3011)
dev_token_endpoint=$(setting DEV_TOKEN_ENDPOINT "")
if [ -z "$dev_token_endpoint" ] && [ "$(setting AUTH_MODE jwt)" != none ] && configured JWT_SECRET; then
    dev_token_endpoint=true
    echo "run.sh: ⚠️  DEV_TOKEN_ENDPOINT=true for this demo: POST /dev/token on port $facade_port gives any loopback" \
        "caller a token for any user (no scopes). Development only: never set it in a deployment." >&2
fi
# The gateway refuses WebSocket upgrades from other pages' origins (decision 0017); the page's origin is the
# facade's, under either loopback name.
if ! configured WS_FACADE_ORIGIN; then
    export WS_FACADE_ORIGIN="http://localhost:$facade_port,http://127.0.0.1:$facade_port"
fi
page_url="http://localhost:$facade_port/"
if [ "$gateway_port" != 3011 ]; then page_url="$page_url?gateway=ws://localhost:$gateway_port/"; fi

# Each process connects to RabbitMQ as its own broker user (services.sh made them, with their passwords in
# .dev/rabbitmq-users.env), so the core authorizes each by its AMQP user_id (README, "Broker users").
users_file=${RABBITMQ_USERS_FILE:-.dev/rabbitmq-users.env}
broker_url() {
    local variable password
    variable="$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')_PASSWORD"
    password=$(sed -n "s/^$variable=//p" "$users_file" | tail -n 1)
    [ -n "$password" ] || { echo "run.sh: $users_file has no $variable; run scripts/services.sh up" >&2; exit 1; }
    printf 'amqp://%s:%s@localhost:%s' "$1" "$password" "${SERVICES_AMQP_PORT:-5672}"
}
core_url=$(broker_url inventory-core)
facade_url=$(broker_url inventory-facade)
gateway_url=$(broker_url inventory-gateway)

# The demo showtime, so that the seed's example requests work at once.
provision_demo() {
    # The demo showtime (showtime_123, seat_1 ... seat_100), idempotently: the seed's example requests work at once.
    "$bin/inventory-rpc" provision-demo
}

pids=()
stopping=false
stop() {
    if ! $stopping; then echo "run.sh: stopping the core, the facade and the gateway" >&2; fi
    stopping=true
    # A second Ctrl-C sends a second signal, which ends the processes at once.
    kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM HUP

# setsid: the terminal's Ctrl-C reaches this script only, which passes one SIGTERM to each process.
# Without it each would get the terminal's SIGINT and this script's SIGTERM, and take the second
# signal as "stop now".
RABBITMQ_URL=$core_url setsid "$bin/inventory-rpc" serve &
pids+=($!)
RABBITMQ_URL=$facade_url DEV_TOKEN_ENDPOINT=${dev_token_endpoint:-false} setsid "$bin/http-facade" &
pids+=($!)
RABBITMQ_URL=$gateway_url setsid "$bin/realtime-gateway" &
pids+=($!)

provision_demo || echo "run.sh: demo provisioning failed; running without the demo showtime" >&2
print_tokens || echo "run.sh: could not mint the development tokens" >&2
echo "run.sh: the seat map page: $page_url (showtime_123; demo sign-in$([ "${dev_token_endpoint:-false}" = true ] || echo " off: open it with #token=YOUR_TOKEN"))"

# Reap both. `wait -n` also returns when a signal interrupts it (the trap has run then), with no pid.
declare -A exit_codes=()
unexpected=false
while [ ${#exit_codes[@]} -lt ${#pids[@]} ]; do
    running=()
    for pid in "${pids[@]}"; do [ -n "${exit_codes[$pid]:-}" ] || running+=("$pid"); done
    finished="" code=0
    wait -n -p finished "${running[@]}" || code=$?
    [ -n "${finished:-}" ] || continue
    exit_codes[$finished]=$code
    if ! $stopping; then
        echo "run.sh: a process ended on its own (exit status $code); stopping the others" >&2
        unexpected=true
        stop
    fi
done

$unexpected && exit 1
for pid in "${pids[@]}"; do [ "${exit_codes[$pid]}" -eq 0 ] || exit 1; done
exit 0
