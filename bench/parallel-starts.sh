#!/usr/bin/env bash
# A load run, not a benchmark: ROUNDS rounds of 20 `run -d` at once on one network, each
# round checking that `network inspect` lists all 20 (a look at the network during another
# container's start once released the starting container's endpoint), then removing them.
# Prints the rounds that lost one and the count.
#
#   bench/parallel-starts.sh [ROUNDS]     (default 100; needs root; builds debug)
set -euo pipefail
rounds=${1:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build -q -p ketch-cli -p ketch-shim
ketch=$here/target/debug/ketch
work=$(mktemp -d /var/tmp/ketch-parallel.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktpar$$ KETCH_IP_FORWARD=false
k() { "$ketch" "$@"; }
cleanup() {
    k rm -f $(k ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    k network rm many >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
tests/fixtures/busybox-rootfs.sh "$work/busybox.tar"
k import "$work/busybox.tar" busybox >/dev/null
k network create --subnet 10.231.77.0/24 many >/dev/null
lost=0
for round in $(seq 1 "$rounds"); do
    for i in $(seq 0 19); do
        k run -d --name "c$i" --network many busybox sleep 1000 >/dev/null &
    done
    wait
    n=$(k network inspect -f '{{json .Containers}}' many |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
    if [ "$n" != 20 ]; then
        lost=$((lost + 1))
        echo "round $round: network inspect lists $n of 20"
    fi
    k rm -f $(k ps -aq) >/dev/null
done
echo "$lost of $rounds rounds lost an endpoint"
[ "$lost" = 0 ]
