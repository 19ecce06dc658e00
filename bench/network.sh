#!/usr/bin/env bash
# The cost of networking: `ketch run --rm IMAGE true` on the default bridge beside
# `--network none` (medians of N, hyperfine), and then throughput of 1 GiB over HTTP from
# one container to another over a bridge network beside the same over the host's loopback.
# Nothing leaves this machine.
#
#   bench/network.sh [N]     (default 20; needs root; builds release)
set -euo pipefail
n=${1:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-net-bench.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktbench$$ KETCH_IP_FORWARD=false
k() { "$ketch" "$@"; }
cleanup() {
    k rm -f $(k ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    k network prune -f >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
k import "$work/rootfs.tar" bench >/dev/null
k run --rm bench true   # makes the default network

median_ms() {
    hyperfine -N -w 3 -r "$n" --export-csv "$work/t.csv" "$*" >/dev/null 2>&1
    awk -F, 'NR == 2 {printf "%.2f", $4 * 1000}' "$work/t.csv"
}
none=$(median_ms "$ketch" run --rm --network none bench true)
bridge=$(median_ms "$ketch" run --rm bench true)
printf '%-44s %8.1f ms\n' "run --rm --network none IMAGE true" "$none"
printf '%-44s %8.1f ms   bridge adds %.1f ms\n' "run --rm IMAGE true (default bridge)" "$bridge" \
    "$(echo "$bridge - $none" | bc -l)"

# 1 GiB over HTTP (busybox httpd serving a sparse file, busybox nc reading it): container to
# container over a user-defined bridge, then the same two programs over the host's loopback.
# busybox nc sends from a pipe unreliably, so the bulk goes the other way.
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "($e - $s) / 1000000000" | bc -l; }
k network create benchnet >/dev/null
k run -d --name src --network benchnet bench sh -c \
    'mkdir /www && truncate -s 1G /www/big && exec httpd -f -p 80 -h /www' >/dev/null
sleep 0.3
t=$(secs k run --rm --network benchnet bench sh -c \
    "printf 'GET /big HTTP/1.0\r\n\r\n' | nc src 80 | wc -c")
bridge_mbs=$(echo "1024 / $t" | bc -l)
k rm -f src >/dev/null
mkdir -p "$work/www" && truncate -s 1G "$work/www/big"
busybox httpd -f -p 127.0.0.1:15080 -h "$work/www" &
httpd=$!
sleep 0.3
t=$(secs sh -c "printf 'GET /big HTTP/1.0\r\n\r\n' | busybox nc 127.0.0.1 15080 | wc -c")
kill "$httpd" 2>/dev/null || true
lo_mbs=$(echo "1024 / $t" | bc -l)
printf '%-44s %8.0f MiB/s\n' "1 GiB container -> container (bridge)" "$bridge_mbs"
printf '%-44s %8.0f MiB/s   bridge/loopback = %.2f\n' "1 GiB host -> host (loopback)" "$lo_mbs" \
    "$(echo "$bridge_mbs / $lo_mbs" | bc -l)"
