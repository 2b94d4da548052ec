#!/usr/bin/env bash
# Local PostgreSQL, Redis and RabbitMQ for development, tests and CI, without Docker or systemd.
#
#   scripts/services.sh up          install what is missing, start what does not answer, wait for all
#   scripts/services.sh status      one line per service; exit 1 if any is down
#   scripts/services.sh down        stop the services that `up` started (never ones it found running)
#   scripts/services.sh down --all  stop all three, whoever started them
#   scripts/services.sh broker-user USER PASSWORD ROLE [VHOST]
#                                   create or update one RabbitMQ user with a role's permissions on VHOST
#                                   (default /); ROLE is core, caller or consumer (see broker_permissions)
#
# `up` reuses a service that already answers on its standard loopback port, and takes about a second
# when all three do. It sets up what the default URLs of README.md need: database `inventory_db` with
# user postgres/postgres, RabbitMQ's guest/guest, and one RabbitMQ user per service (inventory-core,
# inventory-facade, inventory-orders, inventory-gateway, inventory-admin) with the permissions of
# README.md's table; their passwords are made on first run into .dev/rabbitmq-users.env (mode 0600, kept
# out of git; RABBITMQ_USERS_FILE moves it), or taken from that file. On a fresh Debian machine it installs the
# servers and the -dev packages the Swift build links against (apt-get update runs only when something
# is missing), the network tools of the fault suite (ip, nft), headless Chromium and chromedriver for the
# seat map page's browser test, and the Python packages the tests use,
# at the exact versions of requirements-test.txt. Run it as root, or as a user with sudo.
set -euo pipefail

# The ports and the state folder can be moved, to try this script beside services already running.
readonly PG_PORT=${SERVICES_PG_PORT:-5432} REDIS_PORT=${SERVICES_REDIS_PORT:-6379} AMQP_PORT=${SERVICES_AMQP_PORT:-5672}
readonly DATABASE=inventory_db DB_USER=postgres DB_PASSWORD=postgres
readonly APT_PACKAGES=(
    postgresql redis-server rabbitmq-server
    librabbitmq-dev libpq-dev libhiredis-dev libmicrohttpd-dev pkg-config
    iproute2 nftables
    # The seat map page's browser test (Tests/HTTPFacadeTests/SeatMapBrowserTests.swift): headless Chromium
    # and its WebDriver, driven by Selenium (requirements-test.txt).
    chromium chromium-driver
)
# The tests' Python tools, each pinned (schemathesis, hypothesis, jsonschema, ...): one file for all.
REQUIREMENTS=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/requirements-test.txt
readonly REQUIREMENTS
readonly APT_PYTHON_PACKAGES=(python3 python3-pip)
# Bounded waits, in seconds. RabbitMQ boots slowest, most of all the first time.
readonly PG_WAIT=60 REDIS_WAIT=20 RABBIT_WAIT=120
# The broker refuses a message larger than this (closes the publisher's channel, 406): a request the core would
# refuse anyway (MAX_REQUEST_BYTES, 2 MiB) never crosses the network twice, while the largest reply (an
# availability of 10,000 seats with long ids and metadata, a few MiB) still fits. RabbitMQ 3.x defaults to
# 128 MiB (4.x to 16 MiB). Decision 0015.
readonly AMQP_MAX_MESSAGE_SIZE=${SERVICES_AMQP_MAX_MESSAGE_SIZE:-16777216}

# Which services `up` started, so that `down` stops those and no others. Machine-wide, like the services.
readonly STATE_DIR=${SERVICES_STATE_DIR:-/var/tmp/seat-inventory-services}
readonly STARTED_FILE=$STATE_DIR/started

say() { printf '%-11s %s\n' "$1" "$2"; }
fail() {
    printf 'services.sh: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as a system user (postgres); from / so that it never complains about our directory.
as_user() {
    local user=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u "$user" -- "$@")
    else
        (cd / && sudo -u "$user" -- "$@")
    fi
}

# Polls `check` once a quarter second until it succeeds or `seconds` pass.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.25
    done
}

mark_started() {
    grep -qx "$1" "$STARTED_FILE" 2>/dev/null || echo "$1" >>"$STARTED_FILE"
}

# MARK: - Packages

APT_UPDATED=false

# apt-get install, after one apt-get update per run. Services are not started by the packages' scripts
# (policy-rc.d, as in Docker images): this script starts them, bound to loopback, and knows it did.
apt_install() {
    local policy=/usr/sbin/policy-rc.d added_policy=false status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy"
        added_policy=true
    fi
    if ! $APT_UPDATED; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$STATE_DIR/apt.log" 2>&1 || status=$?
        APT_UPDATED=true
    fi
    if [ "$status" = 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
            >>"$STATE_DIR/apt.log" 2>&1 || status=$?
    fi
    if $added_policy; then as_root rm -f "$policy"; fi
    return "$status"
}

install_packages() {
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    if ! command -v python3 >/dev/null 2>&1; then missing+=("${APT_PYTHON_PACKAGES[@]}"); fi
    if [ ${#missing[@]} -gt 0 ]; then
        say packages "installing ${missing[*]} (log: $STATE_DIR/apt.log)"
        apt_install "${missing[@]}" || fail "apt-get install ${missing[*]} failed; see $STATE_DIR/apt.log"
    fi

    if ! python_pins_installed; then
        say python "installing $REQUIREMENTS (log: $STATE_DIR/pip.log)"
        # pip first; Debian's own Python refuses that (PEP 668) without the flag.
        python3 -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" >"$STATE_DIR/pip.log" 2>&1 ||
            python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$REQUIREMENTS" \
                >>"$STATE_DIR/pip.log" 2>&1 || true
        python_pins_installed || fail "the Python packages of $REQUIREMENTS are not as pinned; see $STATE_DIR/pip.log"
    fi
}

# Every `name==version` line of requirements-test.txt is installed at exactly that version. Reads the
# installed packages' metadata without importing them: fast enough to run every time.
python_pins_installed() {
    python3 - "$REQUIREMENTS" <<'EOF'
import importlib.metadata, sys
wrong = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        wrong.append(f"{name} {installed or 'missing'} (pinned {version})")
if wrong:
    print("requirements-test.txt: not as pinned: " + ", ".join(wrong), file=sys.stderr)
sys.exit(1 if wrong else 0)
EOF
}

# MARK: - PostgreSQL

pg_answers() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_login_works() {
    PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DATABASE" \
        -tAqc 'SELECT 1' >/dev/null 2>&1
}

# The Debian cluster (`VERSION NAME`) that listens on PG_PORT, made if there is none.
pg_cluster() {
    local cluster
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }')
    if [ -z "$cluster" ]; then
        local version name=main
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$version" ] || fail "PostgreSQL is not installed (/usr/lib/postgresql is empty)"
        if [ -d "/etc/postgresql/$version/main" ]; then name=inventory_$PG_PORT; fi
        as_root pg_createcluster "$version" "$name" --port "$PG_PORT" >/dev/null ||
            fail "pg_createcluster $version $name --port $PG_PORT failed"
        cluster="$version $name"
    fi
    echo "$cluster"
}

postgres_up() {
    local how=reused
    if ! pg_answers; then
        local cluster
        cluster=$(pg_cluster)
        # shellcheck disable=SC2086 # "VERSION NAME" splits into pg_ctlcluster's two arguments on purpose
        as_root pg_ctlcluster $cluster start >/dev/null 2>&1 9>&- || true
        wait_for "$PG_WAIT" pg_answers ||
            fail "PostgreSQL $cluster did not answer on 127.0.0.1:$PG_PORT within ${PG_WAIT}s; see /var/log/postgresql/"
        mark_started "postgresql $cluster"
        how=started
    fi
    if ! pg_login_works; then
        # Through the local socket as the postgres superuser (peer authentication on Debian).
        as_user postgres psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qc \
            "ALTER USER $DB_USER WITH PASSWORD '$DB_PASSWORD'" >/dev/null ||
            fail "PostgreSQL answers on $PG_PORT, but the password of user $DB_USER cannot be set"
        if [ "$(as_user postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
            as_user postgres createdb -p "$PG_PORT" "$DATABASE" || fail "cannot create database $DATABASE"
        fi
        pg_login_works || fail "cannot log in to $DATABASE on 127.0.0.1:$PG_PORT as $DB_USER/$DB_PASSWORD"
    fi
    # The test suite's storms (50 connections at once) meet other suites' cores: PostgreSQL's default of
    # 100 connections was reached once in a clean-clone run ("too many clients already"). Raised once
    # (ALTER SYSTEM), which needs a restart.
    local connections
    connections=$(as_user postgres psql -p "$PG_PORT" -tAc 'SHOW max_connections' 2>/dev/null || echo 0)
    if [ "${connections:-0}" -lt 300 ]; then
        as_user postgres psql -p "$PG_PORT" -qc 'ALTER SYSTEM SET max_connections = 300' >/dev/null ||
            fail "cannot raise max_connections on $PG_PORT"
        local cluster
        cluster=$(pg_cluster)
        # shellcheck disable=SC2086 # "VERSION NAME" splits into pg_ctlcluster's two arguments on purpose
        as_root pg_ctlcluster $cluster restart >/dev/null 2>&1 9>&- || true
        wait_for "$PG_WAIT" pg_answers ||
            fail "PostgreSQL $cluster did not answer on 127.0.0.1:$PG_PORT within ${PG_WAIT}s after its restart"
        how="$how, max_connections 300"
    fi
    say postgresql "up ($how) postgresql://$DB_USER:***@localhost:$PG_PORT/$DATABASE"
}

postgres_down() {
    local cluster=$1
    # shellcheck disable=SC2086
    as_root pg_ctlcluster $cluster stop >/dev/null 2>&1 || true
    say postgresql "stopped ($cluster)"
}

# MARK: - Redis

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
    local how=reused
    if ! redis_answers; then
        # A cache, not a store: no snapshots, nothing written beside the project.
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            --dir "$STATE_DIR" --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log" 9>&- ||
            fail "redis-server did not start; see $STATE_DIR/redis.log"
        wait_for "$REDIS_WAIT" redis_answers ||
            fail "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${REDIS_WAIT}s; see $STATE_DIR/redis.log"
        mark_started "redis $REDIS_PORT"
        how=started
    fi
    say redis "up ($how) redis://localhost:$REDIS_PORT"
}

redis_down() {
    local port=${1:-$REDIS_PORT}
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    say redis "stopped (port $port)"
}

# MARK: - RabbitMQ

amqp_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null; }
rabbit_answers() { amqp_port_open && rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

rabbitmq_up() {
    local how=reused
    if ! amqp_port_open; then
        if ! getent hosts "$(hostname -s)" >/dev/null 2>&1; then
            echo "services.sh: warning: host name $(hostname -s) does not resolve; RabbitMQ may not start" >&2
        fi
        # The Debian wrapper switches to the rabbitmq user and keeps these variables.
        as_root env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" \
            rabbitmq-server -detached >"$STATE_DIR/rabbitmq-start.log" 2>&1 9>&- || true
        if ! wait_for "$RABBIT_WAIT" rabbit_answers; then
            tail -n 20 /var/log/rabbitmq/*.log "$STATE_DIR/rabbitmq-start.log" >&2 2>/dev/null || true
            fail "RabbitMQ did not answer on 127.0.0.1:$AMQP_PORT within ${RABBIT_WAIT}s; see /var/log/rabbitmq/"
        fi
        mark_started rabbitmq
        how=started
    fi
    if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        if ! rabbitmqctl -q authenticate_user guest guest >/dev/null 2>&1; then
            rabbitmqctl -q add_user guest guest >/dev/null 2>&1 || rabbitmqctl -q change_password guest guest >/dev/null
            rabbitmqctl -q set_permissions -p / guest '.*' '.*' '.*' >/dev/null
        fi
        broker_users_up
        # At run time (a broker this script did not start included): new channels take it at once.
        rabbitmqctl -q eval "application:set_env(rabbit, max_message_size, $AMQP_MAX_MESSAGE_SIZE)." >/dev/null ||
            echo "services.sh: warning: could not set RabbitMQ's max_message_size" >&2
    else
        # Something answers on the port that rabbitmqctl cannot reach (another node name or cookie).
        echo "services.sh: warning: port $AMQP_PORT answers but rabbitmqctl cannot reach the node; guest not checked" >&2
    fi
    say rabbitmq "up ($how) amqp://guest:***@localhost:$AMQP_PORT (max_message_size $AMQP_MAX_MESSAGE_SIZE)"
}

# The service users: NAME ROLE. The role decides the vhost permissions (broker_permissions).
readonly BROKER_USERS=(
    "inventory-core core"
    "inventory-facade caller"
    "inventory-orders caller"
    "inventory-gateway consumer"
    "inventory-admin caller"
)
readonly REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly USERS_FILE=${RABBITMQ_USERS_FILE:-$REPO_ROOT/.dev/rabbitmq-users.env}

# RabbitMQ's configure, write and read regexes of ROLE for USER, one per line. Only the core may declare
# the topology and publish to inventory.events (and, for its replies, to the default exchange). Callers
# may only publish to inventory.rpc (direct reply-to needs no permission); they declare nothing (they check
# the exchange with a passive declare). An event consumer calls like a caller and may declare, bind and read
# its own queues only, named after its user (USER.*), bound to inventory.events (read on the exchange).
broker_permissions() {
    local user=$1 role=$2 own
    own="^$(printf '%s' "$user" | sed 's/[.[\*^$()+?{}|]/\\&/g')\\."
    case "$role" in
    core) printf '%s\n' '^inventory\.' '^(inventory\..*|amq\.default)$' '^inventory\.' ;;
    caller) printf '%s\n' '^$' '^inventory\.rpc$' '^$' ;;
    consumer) printf '%s\n' "$own" "^inventory\\.rpc\$|$own" "^inventory\\.events\$|$own" ;;
    *) fail "unknown broker role '$role' (core, caller or consumer)" ;;
    esac
}

# Creates USER (or sets its password) and gives it ROLE's permissions on VHOST. Idempotent.
broker_user() {
    local user=$1 password=$2 role=$3 vhost=${4:-/} permissions
    mapfile -t permissions < <(broker_permissions "$user" "$role")
    if ! rabbitmqctl -q authenticate_user "$user" "$password" >/dev/null 2>&1; then
        rabbitmqctl -q add_user "$user" "$password" >/dev/null 2>&1 ||
            rabbitmqctl -q change_password "$user" "$password" >/dev/null ||
            fail "cannot create RabbitMQ user $user"
    fi
    rabbitmqctl -q set_permissions -p "$vhost" "$user" "${permissions[@]}" >/dev/null ||
        fail "cannot set the permissions of $user on vhost $vhost"
}

# The service users' passwords, made on first run: NAME_PASSWORD lines (inventory-core ->
# INVENTORY_CORE_PASSWORD), mode 0600.
broker_users_file() {
    if [ ! -s "$USERS_FILE" ]; then
        mkdir -p "$(dirname "$USERS_FILE")"
        chmod 700 "$(dirname "$USERS_FILE")" 2>/dev/null || true
        (
            umask 077
            echo "# RabbitMQ service users' passwords, made by scripts/services.sh; never commit this file."
            local entry
            for entry in "${BROKER_USERS[@]}"; do
                echo "$(broker_password_variable "${entry%% *}")=$(head -c 24 /dev/urandom | base64 | tr -d '\n=+/')"
            done
        ) >"$USERS_FILE"
        echo "services.sh: made the RabbitMQ service users' passwords in $USERS_FILE (mode 0600)" >&2
    fi
    chmod 600 "$USERS_FILE"
}

broker_password_variable() { printf '%s_PASSWORD' "$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')"; }

broker_users_up() {
    broker_users_file
    local entry user role variable password
    for entry in "${BROKER_USERS[@]}"; do
        user=${entry%% *} role=${entry#* }
        variable=$(broker_password_variable "$user")
        password=$(sed -n "s/^$variable=//p" "$USERS_FILE" | tail -n 1)
        [ -n "$password" ] || fail "$USERS_FILE has no $variable"
        broker_user "$user" "$password" "$role" /
    done
    say rabbitmq "users ${BROKER_USERS[*]%% *} (passwords in ${USERS_FILE#"$REPO_ROOT"/})"
}

rabbitmq_down() {
    rabbitmqctl -q stop >/dev/null 2>&1 || true
    say rabbitmq stopped
}

# MARK: - Commands

up() {
    install_packages
    postgres_up
    redis_up
    rabbitmq_up
}

status() {
    local down=0
    if pg_answers; then
        if pg_login_works; then say postgresql "up 127.0.0.1:$PG_PORT, $DATABASE ready"; else say postgresql "up 127.0.0.1:$PG_PORT, $DATABASE not set up"; fi
    else
        say postgresql down
        down=1
    fi
    if redis_answers; then say redis "up 127.0.0.1:$REDIS_PORT"; else say redis down; down=1; fi
    if rabbit_answers; then
        say rabbitmq "up 127.0.0.1:$AMQP_PORT"
    elif amqp_port_open; then
        say rabbitmq "port $AMQP_PORT open, node not reachable by rabbitmqctl"
    else
        say rabbitmq down
        down=1
    fi
    return "$down"
}

down() {
    local everything=${1:-}
    if [ "$everything" = --all ]; then
        local cluster
        cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }')
        rabbitmq_down
        redis_down
        if [ -n "$cluster" ]; then postgres_down "$cluster"; fi
        : >"$STARTED_FILE"
        return
    fi
    if [ ! -s "$STARTED_FILE" ]; then
        echo "nothing to stop: up started none of the services (down --all stops them anyway)"
        return
    fi
    local line
    while read -r line; do
        case "$line" in
        rabbitmq) rabbitmq_down ;;
        redis\ *) redis_down "${line#redis }" ;;
        postgresql\ *) postgres_down "${line#postgresql }" ;;
        esac
    done < <(tac "$STARTED_FILE")
    : >"$STARTED_FILE"
}

main() {
    mkdir -p "$STATE_DIR"
    chmod 1777 "$STATE_DIR" 2>/dev/null || true
    # One `up` or `down` at a time: CI and a developer, or two test runs, may call this together.
    # The servers this starts must not inherit fd 9 (each start command closes it with `9>&-`): a
    # daemon holding the lock would make every later run wait for it.
    exec 9>>"$STATE_DIR/lock"
    chmod 666 "$STATE_DIR/lock" 2>/dev/null || true
    flock -w 600 9 || fail "another services.sh is still running"

    case "${1:-}" in
    up) up ;;
    status) status ;;
    down) down "${2:-}" ;;
    broker-user)
        [ $# -ge 4 ] || fail "usage: $0 broker-user USER PASSWORD ROLE [VHOST]"
        broker_user "$2" "$3" "$4" "${5:-/}"
        ;;
    *)
        echo "usage: $0 up | status | down [--all] | broker-user USER PASSWORD ROLE [VHOST]" >&2
        exit 2
        ;;
    esac
}

# Sourcing the file defines the functions without running anything, for trying parts of it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
