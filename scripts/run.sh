#!/usr/bin/env bash
# The README's run command: services up, build, migrate, then the core and the REST facade together,
# their logs on this terminal. Ctrl-C (or SIGTERM to this script) stops both; the script exits 0 when
# both stopped cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
swift build
bin=$(swift build --show-bin-path)
"$bin/inventory-rpc" migrate

# --- DEMO PROVISIONING HOOK -------------------------------------------------------------------------
# Later work fills this in: once the facade answers /readyz, define a demo showtime's seats
# (PUT /showtimes/{id}/seats, idempotent), so that a newcomer's frontend has seats to show.
provision_demo() {
    # The demo showtime (showtime_123, seat_1 ... seat_100), idempotently: the seed's example requests work at once.
    "$bin/inventory-rpc" provision-demo
}
# -----------------------------------------------------------------------------------------------------

pids=()
stopping=false
stop() {
    if ! $stopping; then echo "run.sh: stopping the core and the facade" >&2; fi
    stopping=true
    # A second Ctrl-C sends a second signal, which ends the processes at once.
    kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM HUP

# setsid: the terminal's Ctrl-C reaches this script only, which passes one SIGTERM to each process.
# Without it each would get the terminal's SIGINT and this script's SIGTERM, and take the second
# signal as "stop now".
setsid "$bin/inventory-rpc" serve &
pids+=($!)
setsid "$bin/http-facade" &
pids+=($!)

provision_demo || echo "run.sh: demo provisioning failed; running without the demo showtime" >&2

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
        echo "run.sh: a process ended on its own (exit status $code); stopping the other" >&2
        unexpected=true
        stop
    fi
done

$unexpected && exit 1
for pid in "${pids[@]}"; do [ "${exit_codes[$pid]}" -eq 0 ] || exit 1; done
exit 0
