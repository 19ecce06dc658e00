#!/usr/bin/env bash
# A container's run (create, start, wait, remove of `IMAGE true`, no network) through each
# front door: the CLI (hyperfine, a process each), Python and Node (one engine, N runs in a
# loop), Python through the daemon, and docker-py against the same daemon (and against
# dockerd where one runs: DOCKERD_SOCKET=/var/run/docker.sock). Medians in ms.
#
#   bench/frontdoors.sh [N]     (default 30; after scripts/setup --tests; needs root and hyperfine)
set -euo pipefail
n=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
py=$here/target/test-venv/bin/python
work=$(mktemp -d /var/tmp/ketch-frontdoors.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktfd$$ KETCH_IP_FORWARD=false KETCH_SHIM=$here/target/release/ketch-shim
sock=$work/ketch.sock
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$ketch" rm -f $("$ketch" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    ip link del "$KETCH_BRIDGE" 2>/dev/null || true
    nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
"$ketch" import "$work/rootfs.tar" bench >/dev/null
"$ketch" daemon -H "unix://$sock" 2>/dev/null &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

hyperfine -N -w 3 -r "$n" --export-csv "$work/t.csv" \
    "$ketch run --rm --network none bench true" >/dev/null
awk -F, 'NR == 2 {printf "%-44s %7.2f ms\n", "CLI: ketch run --rm", $4 * 1000}' "$work/t.csv"

"$py" - "$n" "$sock" "${DOCKERD_SOCKET:-}" <<'PY'
import statistics, sys, time
import ketch
n, sock, dockerd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def bench(label, run):
    for _ in range(3):
        run()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    print(f"{label:<44} {statistics.median(times):7.2f} ms")
e = ketch.Engine()
bench("Python: containers.run(remove=True)", lambda: e.containers.run("bench", "true", remove=True, network="none"))
r = ketch.connect(f"unix://{sock}")
bench("Python via daemon: containers.run(...)", lambda: r.containers.run("bench", "true", remove=True, network="none"))
import docker
d = docker.DockerClient(base_url=f"unix://{sock}")
bench("docker-py via ketch daemon: run(remove)", lambda: d.containers.run("bench", "true", remove=True, network_mode="none"))
if dockerd:
    dd = docker.DockerClient(base_url=f"unix://{dockerd}")
    bench("docker-py via dockerd: run(remove)", lambda: dd.containers.run("busybox", "true", remove=True, network_mode="none"))
PY

node - "$n" <<'JS'
const { Engine } = require(process.cwd() + '/bindings-node')
const n = Number(process.argv[2])
const e = new Engine()
const run = async () => {
  const id = await e.createContainer({ Image: 'bench', Cmd: ['true'], HostConfig: { NetworkMode: 'none' } })
  await e.start(id)
  await e.wait(id)
  await e.remove(id)
}
;(async () => {
  for (let i = 0; i < 3; i++) await run()
  const times = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    await run()
    times.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  times.sort((a, b) => a - b)
  console.log(`${'Node: createContainer/start/wait/remove'.padEnd(44)} ${times[Math.floor(n / 2)].toFixed(2).padStart(7)} ms`)
})()
JS
