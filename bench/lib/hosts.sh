# Hosts simulated on this machine for the benches, as the tests' cluster harness makes them:
# network namespaces, each joined as its eth0 to a bridge (ul0) in an underlay namespace.
# Sourced by a bench, which sets `ul` (the underlay's namespace), `hosts` (the hosts'
# namespaces), `ips` (their addresses) and `tag` (a suffix unique to the run).

# A command in namespace NS.
inns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" "$@"; }

# The underlay with its bridge at GATEWAY/24, and each host on it.
make_hosts() {
    local gateway=$1 i
    ip netns add "$ul"
    inns "$ul" sh -c "ip link set lo up && ip link add ul0 type bridge && ip addr add $gateway/24 dev ul0 && ip link set ul0 up"
    for i in "${!hosts[@]}"; do
        ip netns add "${hosts[$i]}"
        inns "$ul" ip link add "ulp$i$tag" type veth peer name "ulh$i$tag"
        inns "$ul" ip link set "ulp$i$tag" master ul0 up
        inns "$ul" ip link set "ulh$i$tag" netns "${hosts[$i]}"
        inns "${hosts[$i]}" sh -c "ip link set lo up && ip link set ulh$i$tag name eth0 && ip addr add ${ips[$i]}/24 dev eth0 && ip link set eth0 up"
    done
}

# The hosts and the underlay gone, with every device in them.
remove_hosts() {
    local ns
    for ns in "$ul" "${hosts[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
