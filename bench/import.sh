#!/usr/bin/env bash
# ketch import and ketch load of a ~200 MB gzipped root file system, beside plain `tar -xzf`
# of the same file, in one script on one machine.
#
#   bench/import.sh [RUNS]       (default 7; needs root, a release build is made)
#
# The rootfs is built from this machine's own /usr/share (no download). Each
# run does all three, in rotating order, each into a fresh directory after `sync`; the
# figures are medians of per-run ratios, since disk-heavy timings swing widely here.
set -euo pipefail
runs=${1:-7}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-/var/tmp/ketch-bench}
mkdir -p "$work"
cd "$here"
cargo build --release -q -p ketch-cli
ketch=$here/target/release/ketch

rootfs=$work/rootfs.tar.gz
if [ ! -s "$rootfs" ]; then
    echo "building $rootfs from /usr/share ..." >&2
    tar -C / --numeric-owner -cf - usr/share 2>/dev/null | gzip -6 > "$rootfs.tmp"
    mv "$rootfs.tmp" "$rootfs"
fi
size=$(stat -c %s "$rootfs")
archive=$work/image.tar
if [ ! -s "$archive" ]; then
    r=$(mktemp -d "$work/mk.XXXX")
    "$ketch" --root "$r" import "$rootfs" bench:1 >/dev/null
    "$ketch" --root "$r" save -o "$archive" bench:1
    rm -rf "$r"
fi

now() { date +%s.%N; }
t_tar=(); t_import=(); t_load=()
clean() { rm -rf "$work/run"; mkdir -p "$work/run"; sync; }
one() {
    clean
    local s e
    case $1 in
        tar)    mkdir "$work/run/x"; s=$(now); tar -xzf "$rootfs" -C "$work/run/x"; e=$(now); t_tar+=("$(echo "$e - $s" | bc)");;
        import) s=$(now); "$ketch" --root "$work/run/root" import "$rootfs" bench:1 >/dev/null; e=$(now); t_import+=("$(echo "$e - $s" | bc)");;
        load)   s=$(now); "$ketch" --root "$work/run/root" load -q -i "$archive"; e=$(now); t_load+=("$(echo "$e - $s" | bc)");;
    esac
}
for i in $(seq 1 "$runs"); do
    case $((i % 3)) in
        0) order="tar import load";;
        1) order="import load tar";;
        2) order="load tar import";;
    esac
    for k in $order; do one "$k"; done
    printf 'run %d: tar %.2fs  import %.2fs  load %.2fs\n' "$i" "${t_tar[-1]}" "${t_import[-1]}" "${t_load[-1]}" >&2
done
clean; rm -rf "$work/run"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratios() { local -n num=$1; local out=(); for i in "${!num[@]}"; do out+=("$(echo "${num[$i]} / ${t_tar[$i]}" | bc -l)"); done; median "${out[@]}"; }
mb=$(echo "$size / 1000000" | bc)
printf '\nrootfs: %s MB gzipped, %d runs (medians)\n' "$mb" "$runs"
printf '  tar -xzf       %6.2fs  %6.1f MB/s  1.00x\n' "$(median "${t_tar[@]}")" "$(echo "$size / $(median "${t_tar[@]}") / 1000000" | bc -l)"
printf '  ketch import   %6.2fs  %6.1f MB/s  %.2fx\n' "$(median "${t_import[@]}")" "$(echo "$size / $(median "${t_import[@]}") / 1000000" | bc -l)" "$(ratios t_import)"
printf '  ketch load     %6.2fs  %6.1f MB/s  %.2fx\n' "$(median "${t_load[@]}")" "$(echo "$size / $(median "${t_load[@]}") / 1000000" | bc -l)" "$(ratios t_load)"
