#!/usr/bin/env bash
# Pull and push of a ~200 MB, 5-layer image over loopback, beside skopeo (and umoci to
# unpack what skopeo fetched), in one script on one machine.
#
#   bench/registry.sh [RUNS]     (default 5; needs root, skopeo and umoci; a release build
#                                 is made)
#
# The image is built from this machine's own /usr/share (no download): five gzipped layers,
# an OCI layout. The registry is `ketch registry serve` on 127.0.0.1, the same for every
# client. Pull, end to end into an empty place each run, with caches dropped:
#   ketch pull                    (ready to run: layers unpacked into snapshots)
#   skopeo copy docker:// oci:  + umoci unpack   (the same: a root file system on disk)
#   skopeo copy docker:// oci:    (fetch only, for reference)
#   tar -xzf of the layout's layers, in order (unpacking alone, no network: the floor)
# Push, into a fresh registry each run: `ketch push` of the image loaded from the layout,
# beside `skopeo copy oci: docker://`. dockerd and podman are timed where installed
# (DOCKERD_SOCKET for a running dockerd; podman on PATH). Figures are medians of per-run
# times and of per-run ratios.
set -euo pipefail
runs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-/var/tmp/ketch-bench}
mkdir -p "$work"
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
export KETCH_IP_FORWARD=false KETCH_CONFIG=$work/config

layout=$work/registry-oci
if [ ! -s "$layout/index.json" ]; then
    echo "building a 5-layer image from /usr/share in $layout ..." >&2
    rm -rf "$layout" "$work/layers"
    mkdir -p "$work/layers"
    # Five groups of /usr/share's directories, by name.
    mapfile -t dirs < <(cd / && ls -d usr/share/*/ | sed 's|/$||')
    for i in 0 1 2 3 4; do
        part=()
        for j in "${!dirs[@]}"; do [ $((j % 5)) = "$i" ] && part+=("${dirs[$j]}"); done
        # The first layer carries busybox too, so that the pulled image can run something.
        [ "$i" = 0 ] && part+=(usr/bin/busybox)
        tar -C / --numeric-owner -cf "$work/layers/$i.tar" "${part[@]}" 2>/dev/null || true
    done
    python3 - "$work/layers" "$layout" <<'EOF'
import gzip, hashlib, json, os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d
layers, diffs = [], []
for i in range(5):
    raw = open(os.path.join(src, f"{i}.tar"), "rb").read()
    diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
    gz = gzip.compress(raw, 6, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diffs},
                     "history": [{"created_by": f"layer {i}"} for i in range(5)]}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
                       "layers": layers}).encode()
md = put(manifest)
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
           "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
          open(os.path.join(out, "index.json"), "w"))
EOF
    rm -rf "$work/layers"
fi
size=$(du -sb "$layout/blobs" | cut -f1)

regs=()
stop_registries() { for p in "${regs[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; regs=(); }
trap 'stop_registries; rm -rf "$work/run" "$work/reg"' EXIT
# Starts `ketch registry serve` on a root of its own; sets $addr.
start_registry() {
    local root=$1 log
    log=$(mktemp)
    "$ketch" --root "$root" registry serve --addr 127.0.0.1:0 2>"$log" &
    regs+=($!)
    for _ in $(seq 1 100); do grep -q listening "$log" && break; sleep 0.05; done
    addr=$(sed -n 's|.*://\([^ ]*\).*|\1|p' "$log" | head -1)
    rm -f "$log"
}

rm -rf "$work/reg"
start_registry "$work/reg/pull"
pull_addr=$addr
skopeo copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$pull_addr/bench/img:1"
image=$pull_addr/bench/img:1

now() { date +%s.%N; }
# Each run starts from the same place: the last run's files gone, written back and dropped
# from the caches (without this, the deletion of the last run's tens of thousands of files
# is still being paid for during the next, and run times swing by a factor of four).
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
clean() { rm -rf "$work/run"; mkdir -p "$work/run"; settle; }
t_ketch=(); t_tar=(); t_skumoci=(); t_skopeo=(); t_kpush=(); t_spush=(); t_docker=(); t_podman=()
pull_one() {
    clean
    local s e
    case $1 in
        ketch)
            s=$(now); "$ketch" --root "$work/run/root" pull -q "$image" >/dev/null; e=$(now)
            t_ketch+=("$(echo "$e - $s" | bc)")
            # Ready to run: the pulled image runs.
            "$ketch" --root "$work/run/root" run --rm --network none "$image" /usr/bin/busybox true;;
        skumoci)
            s=$(now)
            skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/run/oci:img"
            umoci unpack --image "$work/run/oci:img" "$work/run/bundle" >/dev/null
            e=$(now); t_skumoci+=("$(echo "$e - $s" | bc)");;
        tar)
            # The floor: no network, no verification, GNU tar into one directory.
            mkdir -p "$work/run/tar"
            s=$(now)
            for l in "${layer_blobs[@]}"; do tar -C "$work/run/tar" -xzf "$layout/blobs/sha256/$l"; done
            e=$(now); t_tar+=("$(echo "$e - $s" | bc)");;
        skopeo)
            s=$(now); skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/run/oci:img"; e=$(now)
            t_skopeo+=("$(echo "$e - $s" | bc)");;
        docker)
            docker -H "unix://$DOCKERD_SOCKET" rmi -f "$image" >/dev/null 2>&1 || true
            s=$(now); docker -H "unix://$DOCKERD_SOCKET" pull -q "$image" >/dev/null; e=$(now)
            t_docker+=("$(echo "$e - $s" | bc)");;
        podman)
            s=$(now); podman --root "$work/run/podman" pull -q --tls-verify=false "$image" >/dev/null; e=$(now)
            t_podman+=("$(echo "$e - $s" | bc)");;
    esac
}
# The layers in order, for the tar floor.
mapfile -t layer_blobs < <(python3 -c '
import json, sys
d = sys.argv[1] + "/blobs/sha256/"
m = json.load(open(d + json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]["digest"][7:]))
print("\n".join(l["digest"][7:] for l in m["layers"]))' "$layout")
kinds="ketch skumoci skopeo tar"
[ -n "${DOCKERD_SOCKET:-}" ] && kinds="$kinds docker"
command -v podman >/dev/null 2>&1 && kinds="$kinds podman"
read -ra K <<<"$kinds"
for i in $(seq 1 "$runs"); do
    # A rotating order: no tool always runs first (or after another's page cache).
    for j in "${!K[@]}"; do pull_one "${K[$(((i + j) % ${#K[@]}))]}"; done
    printf 'pull run %d: ketch %.2fs  skopeo+umoci %.2fs  skopeo %.2fs  tar %.2fs\n' "$i" \
        "${t_ketch[-1]}" "${t_skumoci[-1]}" "${t_skopeo[-1]}" "${t_tar[-1]}" >&2
done

# Push: the image loaded from the layout (the same blobs), into a fresh registry each time.
src=$work/run-src
rm -rf "$src"
"$ketch" --root "$src" load -q -i "$layout" >/dev/null
# A name of its own, so that removing the pushed tag after each run keeps the image.
"$ketch" --root "$src" tag "$("$ketch" --root "$src" images -q | head -1)" keep/bench:1
loaded=keep/bench:1
for i in $(seq 1 "$runs"); do
    for k in $( [ $((i % 2)) = 0 ] && echo "ketch skopeo" || echo "skopeo ketch"); do
        stop_registries
        rm -rf "$work/reg/push"
        start_registry "$work/reg/push"
        settle
        if [ "$k" = ketch ]; then
            "$ketch" --root "$src" tag "$loaded" "$addr/bench/push:1"
            s=$(now); "$ketch" --root "$src" push -q "$addr/bench/push:1" >/dev/null; e=$(now)
            "$ketch" --root "$src" rmi "$addr/bench/push:1" >/dev/null
            t_kpush+=("$(echo "$e - $s" | bc)")
        else
            s=$(now); skopeo copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$addr/bench/push:1"; e=$(now)
            t_spush+=("$(echo "$e - $s" | bc)")
        fi
    done
    printf 'push run %d: ketch %.2fs  skopeo %.2fs\n' "$i" "${t_kpush[-1]}" "${t_spush[-1]}" >&2
done
rm -rf "$src"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { local -n num=$1 den=$2; local out=(); for i in "${!num[@]}"; do out+=("$(echo "${num[$i]} / ${den[$i]}" | bc -l)"); done; median "${out[@]}"; }
printf '\nimage: 5 layers, %d MB compressed; %d runs (medians)\n' "$((size / 1000000))" "$runs"
printf 'pull  ketch (ready to run)   %6.2f s\n' "$(median "${t_ketch[@]}")"
printf 'pull  skopeo + umoci unpack  %6.2f s   ketch/that %.2f\n' "$(median "${t_skumoci[@]}")" "$(ratio t_ketch t_skumoci)"
printf 'pull  skopeo (fetch only)    %6.2f s   ketch/that %.2f\n' "$(median "${t_skopeo[@]}")" "$(ratio t_ketch t_skopeo)"
printf 'unpack tar -xzf of the blobs  %6.2f s   ketch/that %.2f\n' "$(median "${t_tar[@]}")" "$(ratio t_ketch t_tar)"
[ ${#t_docker[@]} -gt 0 ] && printf 'pull  dockerd                %6.2f s   ketch/that %.2f\n' "$(median "${t_docker[@]}")" "$(ratio t_ketch t_docker)"
[ ${#t_podman[@]} -gt 0 ] && printf 'pull  podman                 %6.2f s   ketch/that %.2f\n' "$(median "${t_podman[@]}")" "$(ratio t_ketch t_podman)"
printf 'push  ketch                  %6.2f s\n' "$(median "${t_kpush[@]}")"
printf 'push  skopeo (from OCI dir)  %6.2f s   ketch/that %.2f\n' "$(median "${t_spush[@]}")" "$(ratio t_kpush t_spush)"
