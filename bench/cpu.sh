#!/usr/bin/env bash
# The CPU share a busy container gets under `--cpus`: its cgroup's CPU time over a few
# seconds of wall time, beside what `ketch stats` reports. A measurement, so it lives here;
# the tests only check the limit the kernel was given (tests/tests/containers.rs).
#
#   bench/cpu.sh [SECONDS] [CPUS...]     (default 5 s, 0.5 and 1; needs root; builds release)
set -euo pipefail
secs=${1:-5}
shift || true
limits=("$@")
[ ${#limits[@]} -gt 0 ] || limits=(0.5 1)
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-cpu-bench.XXXX)
root=$work/root
export KETCH_BRIDGE=ktbench$$ KETCH_IP_FORWARD=false
cleanup() {
    "$ketch" --root "$root" rm -f $("$ketch" --root "$root" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
"$ketch" --root "$root" import "$work/rootfs.tar" bench >/dev/null

# CPU time of a container's cgroup in microseconds, on whichever layout the host has:
# cpuacct.usage (ns) on v1, usage_usec of cpu.stat on v2.
usage_us() {
    local id=$1 m
    for m in $(awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo); do
        if [ -r "$m/ketch/$id/cpuacct.usage" ]; then
            echo $(($(cat "$m/ketch/$id/cpuacct.usage") / 1000))
            return
        fi
        if [ -r "$m/ketch/$id/cpu.stat" ] && grep -q '^usage_usec' "$m/ketch/$id/cpu.stat"; then
            awk '$1 == "usage_usec" {print $2}' "$m/ketch/$id/cpu.stat"
            return
        fi
    done
    echo "no CPU accounting found for $id" >&2
    return 1
}

now_us() { echo $(($(date +%s%N) / 1000)); }

printf '%-14s %12s %14s\n' "--cpus" "measured" "ketch stats"
for cpus in "${limits[@]}"; do
    id=$("$ketch" --root "$root" run -d --network none --cpus "$cpus" bench sh -c 'while :; do :; done')
    sleep 1
    u0=$(usage_us "$id")
    t0=$(now_us)
    sleep "$secs"
    u1=$(usage_us "$id")
    t1=$(now_us)
    stats=$("$ketch" --root "$root" stats --no-stream --format '{{.CPUPerc}}' "$id")
    share=$(echo "100 * ($u1 - $u0) / ($t1 - $t0)" | bc -l)
    printf '%-14s %11.1f%% %14s\n' "$cpus" "$share" "$stats"
    "$ketch" --root "$root" rm -f "$id" >/dev/null
done
