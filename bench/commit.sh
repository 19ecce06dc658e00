#!/usr/bin/env bash
# `ketch diff` and `ketch commit` of a container that wrote 10 000 small files and one
# 500 MB file, beside `tar -c` of the same files on the same disk (written to a file, as a
# commit writes its layer). Medians of N runs each.
#
#   bench/commit.sh [N]     (default 3; needs root; builds release)
set -euo pipefail
n=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-commit-bench.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktbench$$ KETCH_IP_FORWARD=false
k() { "$ketch" "$@"; }
cleanup() {
    k rm -f $(k ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
k import "$work/rootfs.tar" bench >/dev/null
make_changes='mkdir -p /data/small && cd /data/small && i=0; while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done; dd if=/dev/urandom of=/data/big bs=1M count=500 2>/dev/null'
k run --name changed --network none bench sh -c "$make_changes"
# The same files on the host, for tar.
mkdir -p "$work/host/data"
k cp changed:/data "$work/host/" >/dev/null

secs() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "($e - $s) / 1000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
runs() {
    local out=()
    for i in $(seq 1 "$n"); do
        out+=("$(secs "$@")")
        sync
    done
    printf '%s\n' "${out[@]}" | median
}
tar_ms=$(runs tar -C "$work/host" -cf "$work/changes.tar" data)
diff_ms=$(runs k diff changed)
commit_ms=$(runs k commit changed committed)
printf '%-44s %8d ms\n' "tar -c of the same files (to a file)" "$tar_ms"
printf '%-44s %8d ms   diff/tar = %.2fx\n' "ketch diff" "$diff_ms" "$(echo "$diff_ms / $tar_ms" | bc -l)"
printf '%-44s %8d ms   commit/tar = %.2fx\n' "ketch commit" "$commit_ms" "$(echo "$commit_ms / $tar_ms" | bc -l)"
