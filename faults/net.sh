#!/usr/bin/env bash
# The cores' own network namespaces and the partitions of their links, as Jepsen does them: each core runs
# in a network namespace the harness makes (`ip netns add`), joined to the host by a veth pair whose two
# addresses the harness assigns (10.213.X.1 on the host, 10.213.X.2 in the namespace, a /30 of its own,
# no default route: from inside, the host-side address is the only one reachable). The private
# PostgreSQL, Redis and RabbitMQ listen on those host-side addresses too (faults/stack.sh), so a core's
# traffic to each service crosses its veth, where nftables rules *inside the namespace* drop it: one
# service at a time, both ways or one way. The host's own firewall is never touched, and `ip netns del`
# takes the veth pair and every rule with it.
#
# Sourced by faults/run.sh after stack.sh; needs `ip` and `nft` (scripts/services.sh installs iproute2
# and nftables) and root. Uses NET_TAG (unique per run: the port offset) in every name.

readonly NET_PREFIX=${FAULTS_NET_PREFIX:-10.213}
declare -A NETNS=() NS_ADDR=() HOST_ADDR=() VETH=()

net_available() {
    command -v ip >/dev/null 2>&1 && command -v nft >/dev/null 2>&1 && [ "$(id -u)" = 0 ]
}

# net_add NAME INDEX: a namespace for process NAME, subnet NET_PREFIX.(offset + INDEX).0/30.
net_add() {
    local name=$1 index=$2 ns veth_host veth_ns third
    third=$((NET_TAG + index))
    ns=flt$NET_TAG-$name
    veth_host=fh$NET_TAG$name veth_ns=fn$NET_TAG$name
    ip netns del "$ns" 2>/dev/null || true # a leftover of a run that was killed with -9
    ip link del "$veth_host" 2>/dev/null || true
    ip netns add "$ns"
    ip link add "$veth_host" type veth peer name "$veth_ns"
    ip link set "$veth_ns" netns "$ns"
    ip addr add "$NET_PREFIX.$third.1/30" dev "$veth_host"
    ip link set "$veth_host" up
    ip -n "$ns" addr add "$NET_PREFIX.$third.2/30" dev "$veth_ns"
    ip -n "$ns" link set "$veth_ns" up
    ip -n "$ns" link set lo up
    # One base chain per service and direction, so that healing one link leaves the others' rules alone.
    ip netns exec "$ns" nft -f - <<NFT
table inet faults {
    chain out_postgres { type filter hook output priority 0; policy accept; }
    chain in_postgres { type filter hook input priority 0; policy accept; }
    chain out_rabbitmq { type filter hook output priority 0; policy accept; }
    chain in_rabbitmq { type filter hook input priority 0; policy accept; }
    chain out_redis { type filter hook output priority 0; policy accept; }
    chain in_redis { type filter hook input priority 0; policy accept; }
}
NFT
    NETNS[$name]=$ns NS_ADDR[$name]=$NET_PREFIX.$third.2 HOST_ADDR[$name]=$NET_PREFIX.$third.1 VETH[$name]=$veth_host
}

# Removes every namespace of this run (their veth pairs and rules go with them). Safe to call twice.
net_down() {
    local name
    for name in "${!NETNS[@]}"; do
        ip netns del "${NETNS[$name]}" 2>/dev/null || true
        ip link del "${VETH[$name]}" 2>/dev/null || true
    done
}

service_port() {
    case "$1" in
    postgres) echo "$FAULTS_PG_PORT" ;;
    rabbitmq) echo "$FAULTS_AMQP_PORT" ;;
    redis) echo "$FAULTS_REDIS_PORT" ;;
    esac
}

# net_cut NAME SERVICE DIRECTION: drop NAME's traffic with SERVICE. DIRECTION: both, out (NAME -> service
# lost, the service's packets still arrive) or in (service -> NAME lost).
net_cut() {
    local ns=${NETNS[$1]} service=$2 direction=$3 host=${HOST_ADDR[$1]} port
    port=$(service_port "$service")
    if [ "$direction" != in ]; then
        ip netns exec "$ns" nft add rule inet faults "out_$service" ip daddr "$host" tcp dport "$port" drop
    fi
    if [ "$direction" != out ]; then
        ip netns exec "$ns" nft add rule inet faults "in_$service" ip saddr "$host" tcp sport "$port" drop
    fi
}

net_heal() { # NAME SERVICE
    ip netns exec "${NETNS[$1]}" nft flush chain inet faults "out_$2"
    ip netns exec "${NETNS[$1]}" nft flush chain inet faults "in_$2"
}

# The process NAME (by the address its connections come from), e.g. from pg_stat_activity.client_addr.
name_of_address() {
    local name
    for name in "${!NS_ADDR[@]}"; do
        if [ "${NS_ADDR[$name]}" = "$1" ]; then
            echo "$name"
            return 0
        fi
    done
    return 1
}
