#!/usr/bin/env bash
# `ketch build` of a 20-step Dockerfile (FROM the busybox fixture: five RUNs, five COPYs,
# ten config steps): a cold build (--no-cache) and a fully cached rebuild, end to end
# through the CLI. Beside them, in the same script: `ketch images -q` (opening the root and
# one query: the floor of any command), and `docker build` (the classic builder) and
# `podman build` of the same context where a daemon or podman is there (DOCKER_HOST for a
# running dockerd; podman on PATH).
#
#   bench/build.sh [RUNS]     (default 10; needs root and hyperfine; builds release)
set -euo pipefail
runs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-build-bench.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktbb$$ KETCH_IP_FORWARD=false
k() { "$ketch" "$@"; }
cleanup() {
    k rm -f $(k ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
k import "$work/rootfs.tar" busybox >/dev/null
ctx=$work/ctx
mkdir -p "$ctx/src"
for i in 1 2 3 4 5; do
    head -c $((i * 100000)) /dev/urandom > "$ctx/src/blob$i"
done
cat > "$ctx/Dockerfile" <<'EOF'
FROM busybox
ARG VERSION=1
ENV APP=/app VERSION=$VERSION
WORKDIR /app
COPY src/blob1 ./
RUN cat blob1 | md5sum > sum1
COPY src/blob2 ./
RUN cat blob2 | md5sum > sum2
LABEL org.example.version=$VERSION
COPY src/blob3 ./
RUN cat blob3 | md5sum > sum3
EXPOSE 8080
COPY src/blob4 ./
RUN cat blob4 | md5sum > sum4
VOLUME /data
COPY src/blob5 ./
RUN cat blob5 | md5sum > sum5
USER 1000
ENTRYPOINT ["sh", "-c"]
CMD ["cat /app/sum*"]
EOF

echo "cold build (--no-cache), $runs runs:"
hyperfine -N -r "$runs" -w 1 --export-json "$work/cold.json" \
    "$ketch build -q --network none --no-cache -t bench $ctx" >/dev/null
echo "fully cached rebuild, and the floor of a command on the root:"
hyperfine -N -r $((runs * 5)) -w 3 --export-json "$work/cached.json" \
    "$ketch build -q --network none -t bench $ctx" \
    "$ketch images -q" >/dev/null

peers=()
if [ -n "${DOCKER_HOST:-}" ] && command -v docker >/dev/null; then
    docker import "$work/rootfs.tar" busybox >/dev/null
    export DOCKER_BUILDKIT=0
    peers+=("docker build -q --network none -t bench $ctx")
    hyperfine -N -r "$runs" -w 1 --export-json "$work/docker-cold.json" \
        "docker build -q --network none --no-cache -t bench $ctx" >/dev/null
fi
if command -v podman >/dev/null; then
    podman import "$work/rootfs.tar" busybox >/dev/null
    peers+=("podman build -q --network none -t bench $ctx")
    hyperfine -N -r "$runs" -w 1 --export-json "$work/podman-cold.json" \
        "podman build -q --network none --no-cache -t bench $ctx" >/dev/null
fi
if [ ${#peers[@]} -gt 0 ]; then
    hyperfine -N -r $((runs * 5)) -w 3 --export-json "$work/peers-cached.json" "${peers[@]}" >/dev/null
fi

python3 - "$work" <<'EOF'
import json, os, sys
w = sys.argv[1]
def load(name):
    p = os.path.join(w, name)
    return json.load(open(p))["results"] if os.path.exists(p) else []
cold = load("cold.json")[0]
cached, floor = load("cached.json")
ms = lambda r: r["median"] * 1000
print(f"{'ketch build, cold (20 steps)':48} {ms(cold):9.1f} ms")
print(f"{'ketch build, every step cached':48} {ms(cached):9.1f} ms")
print(f"{'ketch images -q (the floor)':48} {ms(floor):9.1f} ms   cached/floor = {ms(cached)/ms(floor):.2f}x")
for name, label in [("docker-cold.json", "docker build, cold"), ("podman-cold.json", "podman build, cold")]:
    for r in load(name):
        print(f"{label:48} {ms(r):9.1f} ms   ketch/that = {ms(cold)/ms(r):.2f}x")
for r in load("peers-cached.json"):
    label = r["command"].split()[0] + " build, every step cached"
    print(f"{label:48} {ms(r):9.1f} ms   ketch/that = {ms(cached)/ms(r):.2f}x")
EOF
