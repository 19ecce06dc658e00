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
cleanup() {
    "$ketch" --root "$root" rm -f $("$ketch" --root "$root" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
"$ketch" --root "$root" import "$work/rootfs.tar" bench >/dev/null
mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$work/rootfs.tar"
if command -v crun >/dev/null; then
    (cd "$work/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json)
fi

ms() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_n() {
    local out=()
    for i in $(seq 1 "$n"); do
        local s e
        s=$(ms); "$@" >/dev/null 2>&1; e=$(ms)
        out+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${out[@]}" | median
}

"$ketch" --root "$root" run --rm --network none bench true    # warm caches
k=$(time_n "$ketch" --root "$root" run --rm --network none bench true)
printf '%-40s %8.1f ms\n' "ketch run --rm --network none" "$(echo "$k / 1000" | bc -l)"
for rt in crun runc; do
    if command -v $rt >/dev/null; then
        t=$(time_n $rt run --bundle "$work/bundle" "bench-$rt-$$")
        printf '%-40s %8.1f ms   ketch/%s = %.2fx\n' "$rt run" "$(echo "$t / 1000" | bc -l)" "$rt" "$(echo "$k / $t" | bc -l)"
    fi
done
if command -v podman >/dev/null; then
    podman load -q -i <("$ketch" --root "$root" save bench) >/dev/null 2>&1 || true
    t=$(time_n podman run --rm --network none bench true)
    printf '%-40s %8.1f ms\n' "podman run --rm --network none" "$(echo "$t / 1000" | bc -l)"
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
