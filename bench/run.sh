#!/usr/bin/env bash
# Container start-to-exit latency: `ketch run --rm --network none IMAGE true` beside
# `crun run` and `runc run` of a bundle with the same root file system (and `podman run`
# where installed), medians of N runs in one script; then the memory a detached idle
# container leaves behind (its monitor's RSS).
#
#   bench/run.sh [N]     (default 20; needs root; builds release)
set -euo pipefail
n=${1:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-run-bench.XXXX)
root=$work/root
# A default network of the bench's own, gone with it; the host's forwarding left alone.
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
mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$work/rootfs.tar"
spec=$(command -v crun || command -v runc || true)
if [ -n "$spec" ]; then
    (cd "$work/bundle" && "$spec" spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json)
fi

# Median wall time in ms of a command, by hyperfine (no shell in between); the command must
# succeed once first, so a runtime that cannot run here is reported, not timed.
median_ms() {
    local name=$1
    shift
    if ! "$@" >/dev/null 2>"$work/err"; then
        printf '%-40s   failed: %s\n' "$name" "$(tail -1 "$work/err")"
        return 1
    fi
    hyperfine -N -w 3 -r "$n" --export-csv "$work/t.csv" "$*" >/dev/null 2>&1
    awk -F, 'NR == 2 {printf "%.2f", $4 * 1000}' "$work/t.csv"
}

k=$(median_ms "ketch run" "$ketch" --root "$root" run --rm --network none bench true)
printf '%-40s %8.1f ms\n' "ketch run --rm --network none" "$k"
ratio() { printf '%-40s %8.1f ms   ketch/%s = %.2fx\n' "$1" "$2" "$3" "$(echo "$k / $2" | bc -l)"; }
if command -v crun >/dev/null; then
    # crun refuses a hybrid layout whose v2 mount holds any controller; in a private mount
    # namespace without that mount it sees plain v1 and runs with its cgroups as usual.
    if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
        t=$(unshare -m --propagation private bash -c "umount /sys/fs/cgroup/unified && $(declare -f median_ms); work=$work n=$n median_ms crun crun run --bundle $work/bundle bench-crun-$$") &&
            ratio "crun run (v2 mount hidden)" "$t" crun || echo "$t"
    else
        t=$(median_ms crun crun run --bundle "$work/bundle" "bench-crun-$$") && ratio "crun run" "$t" crun || echo "$t"
    fi
fi
if command -v runc >/dev/null; then
    t=$(median_ms runc runc run --bundle "$work/bundle" "bench-runc-$$") && ratio "runc run" "$t" runc || echo "$t"
fi
if command -v podman >/dev/null; then
    podman load -q -i <("$ketch" --root "$root" save bench) >/dev/null 2>&1 || true
    t=$(median_ms podman podman run --rm --network none bench true) && ratio "podman run --rm --network none" "$t" podman || echo "$t"
fi

# What a detached idle container costs: its monitor's resident memory.
id=$("$ketch" --root "$root" run -d bench sleep 1000)
sleep 0.5
shim=$(sed -n 's/.*"ShimPid":\([0-9]*\).*/\1/p' "$root/containers/$id/state.json")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$shim/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$shim/status")
pss=$(awk '/^Pss:/ {print $2}' "/proc/$shim/smaps_rollup")
printf '%-40s %8d KiB\n' "monitor RSS per idle detached container" "$rss"
printf '%-40s %8d KiB  (PSS %d KiB; the rest is shared page cache of libc and the binary)\n' "  of which private (anonymous)" "$anon" "$pss"
"$ketch" --root "$root" rm -f "$id" >/dev/null
