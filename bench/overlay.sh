#!/usr/bin/env bash
# Overlay networks across two hosts simulated on this machine (network namespaces on an
# underlay bridge, one etcd, a ketch daemon per host, as the tests make them): latency
# (ping) and throughput (1 GiB over HTTP through busybox nc) container to container across
# the overlay, beside the same over a local bridge network and over the underlay itself;
# and the time from `run -d` on host A until a container on host B resolves and reaches
# the new one (median of N). Nothing leaves this machine.
#
#   bench/overlay.sh [N]     (default 10; needs root, etcd-server; builds release)
set -euo pipefail
n=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-overlay-bench.XXXX)
tag=$$
ul=kob-ul-$tag
hosts=(kob-a-$tag kob-b-$tag)
ips=(198.18.0.11 198.18.0.12)
store=198.18.0.1
# shellcheck source=bench/lib/hosts.sh
. "$here/bench/lib/hosts.sh"
# The environment of ketch on host I (0 or 1), in the cluster.
kenv() {
    echo "KETCH_ROOT=$work/root$1 KETCH_BRIDGE=kob$1$tag KETCH_IP_FORWARD=false" \
        "KETCH_CLUSTER_STORE=etcd://$store:2379 KETCH_CLUSTER_ADVERTISE=${ips[$1]}"
}
k() {
    local i=$1; shift
    # shellcheck disable=SC2046
    inns "${hosts[$i]}" env $(kenv "$i") "$ketch" "$@"
}
pids=()
cleanup() {
    for i in 0 1; do
        k "$i" rm -f $(k "$i" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    done
    for i in 0 1; do k "$i" network prune -f >/dev/null 2>&1 || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    remove_hosts
    rm -rf "$work"
}
trap cleanup EXIT

make_hosts "$store"
# Started by nsenter itself, not through a function (a subshell), so that $! is theirs.
nsenter --net=/run/netns/"$ul" etcd --name store --data-dir "$work/etcd" \
    --listen-client-urls http://$store:2379 --advertise-client-urls http://$store:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster store=http://127.0.0.1:2380 >"$work/etcd.log" 2>&1 &
pids+=($!)
until inns "$ul" env ETCDCTL_API=3 etcdctl --endpoints $store:2379 endpoint health >/dev/null 2>&1; do sleep 0.1; done
tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
for i in 0 1; do
    k "$i" import "$work/rootfs.tar" bench >/dev/null
    # shellcheck disable=SC2046
    nsenter --net=/run/netns/"${hosts[$i]}" env $(kenv "$i") "$ketch" daemon \
        -H "unix://$work/d$i.sock" >/dev/null 2>"$work/daemon$i.log" &
    pids+=($!)
done
for i in 0 1; do until [ -S "$work/d$i.sock" ]; do sleep 0.05; done; done

k 0 network create -d overlay ov >/dev/null
k 0 network create localnet >/dev/null
serve='mkdir /www && truncate -s 1G /www/big && echo ok > /www/index.html && exec httpd -f -p 80 -h /www'
k 1 run -d --name far --network ov bench sh -c "$serve" >/dev/null
k 0 run -d --name near --network localnet bench sh -c "$serve" >/dev/null
k 0 run -d --name cli --network ov bench sleep 100000 >/dev/null
k 0 run -d --name lcli --network localnet bench sleep 100000 >/dev/null
mkdir -p "$work/www" && truncate -s 1G "$work/www/big"
nsenter --net=/run/netns/"${hosts[1]}" busybox httpd -f -p "${ips[1]}:15080" -h "$work/www" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
k 0 exec cli sh -c 'until ping -c 1 -W 1 far >/dev/null 2>&1; do sleep 0.1; done'

ping_ms() { awk -F/ '/min\/avg/ {print $4}'; }
overlay_lat=$(k 0 exec cli ping -c "$((n * 5))" -i 0.05 far | ping_ms)
bridge_lat=$(k 0 exec lcli ping -c "$((n * 5))" -i 0.05 near | ping_ms)
underlay_lat=$(inns "${hosts[0]}" busybox ping -c "$((n * 5))" -i 0.05 "${ips[1]}" | ping_ms)

secs() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "($e - $s) / 1000000000" | bc -l; }
get="printf 'GET /big HTTP/1.0\r\n\r\n'"
t=$(secs k 0 exec cli sh -c "$get | nc far 80 | wc -c")
overlay_mbs=$(echo "1024 / $t" | bc -l)
t=$(secs k 0 exec lcli sh -c "$get | nc near 80 | wc -c")
bridge_mbs=$(echo "1024 / $t" | bc -l)
t=$(secs inns "${hosts[0]}" sh -c "$get | busybox nc ${ips[1]} 15080 | wc -c")
underlay_mbs=$(echo "1024 / $t" | bc -l)

# From `run -d` on A to a container on B that resolves and reaches it.
k 1 run -d --name watcher --network ov bench sleep 100000 >/dev/null
times=()
for r in $(seq "$n"); do
    s=$(date +%s%N)
    k 0 run -d --name "probe$r" --network ov bench sleep 100000 >/dev/null
    k 1 exec watcher sh -c "until ping -c 1 -W 1 probe$r >/dev/null 2>&1; do sleep 0.01; done"
    e=$(date +%s%N)
    times+=("$(( (e - s) / 1000000 ))")
    k 0 rm -f "probe$r" >/dev/null
done
visible=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

printf '%-46s %8.3f ms\n' "ping, container -> container (overlay)" "$overlay_lat"
printf '%-46s %8.3f ms\n' "ping, container -> container (local bridge)" "$bridge_lat"
printf '%-46s %8.3f ms\n' "ping, host -> host (underlay)" "$underlay_lat"
printf '%-46s %8.0f MiB/s\n' "1 GiB, container -> container (overlay)" "$overlay_mbs"
printf '%-46s %8.0f MiB/s   overlay/bridge = %.2f\n' "1 GiB, container -> container (local bridge)" \
    "$bridge_mbs" "$(echo "$overlay_mbs / $bridge_mbs" | bc -l)"
printf '%-46s %8.0f MiB/s   overlay/underlay = %.2f\n' "1 GiB, host -> host (underlay)" \
    "$underlay_mbs" "$(echo "$overlay_mbs / $underlay_mbs" | bc -l)"
printf '%-46s %8d ms (median of %d)\n' "run -d on A until B resolves and reaches it" "$visible" "$n"
