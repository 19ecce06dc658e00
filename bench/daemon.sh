#!/usr/bin/env bash
# ketch daemon under load: 1000 keep-alive `GET /containers/json` and `GET /_ping` over the
# UNIX socket (one client), fifty clients running containers at once (rate, and the daemon's
# RSS before and after), and `docker run --rm IMAGE true` through the daemon (hyperfine,
# median of N), beside dockerd's where one runs (DOCKERD_SOCKET=/var/run/docker.sock).
# Then `ketch run --rm IMAGE true` embedded and through the daemon.
#
#   bench/daemon.sh [N]     (default 20; needs root, python3, hyperfine and a docker CLI)
set -euo pipefail
n=${1:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
work=$(mktemp -d /var/tmp/ketch-daemon-bench.XXXX)
export KETCH_ROOT=$work/root KETCH_BRIDGE=ktbench$$ KETCH_IP_FORWARD=false
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
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "the daemon did not come up"; exit 1; }

requests() {
    python3 - "$1" "$2" <<'EOF'
import http.client, socket, sys, time
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
c = Unix(sys.argv[1])
start = time.perf_counter()
for _ in range(1000):
    c.request("GET", sys.argv[2])
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
print(f"{time.perf_counter() - start:.3f}")
EOF
}
for path in /_ping /v1.47/containers/json; do
    t=$(requests "$sock" "$path")
    printf '%-48s %7s s  (%.0f req/s)\n' "ketch daemon: 1000 x GET $path" "$t" "$(echo "1000 / $t" | bc -l)"
    if [ -S "${DOCKERD_SOCKET:-/nonexistent}" ]; then
        t=$(requests "$DOCKERD_SOCKET" "$path")
        printf '%-48s %7s s\n' "dockerd: 1000 x GET $path" "$t"
    fi
done
# Fifty clients at once for LOAD_SECS (default 30) s, each creating, starting, waiting for and
# removing containers: rounds per second, and the daemon's RSS after a warm-up and once the
# clients are gone (tests/tests/daemon.rs checks only that threads and descriptors come back).
python3 - "$sock" "$daemon" "${LOAD_SECS:-30}" <<'EOF'
import http.client, json, os, socket, sys, threading, time
sock, pid, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
def call(method, path, body=None, want=200):
    c = Unix(sock)
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == want, (method, path, r.status, data)
    return json.loads(data) if data else None
def one_round():
    cid = call("POST", "/containers/create", {"Image": "bench", "Cmd": ["true"],
               "HostConfig": {"NetworkMode": "none"}}, 201)["Id"]
    call("POST", f"/containers/{cid}/start", want=204)
    assert call("POST", f"/containers/{cid}/wait")["StatusCode"] == 0
    call("DELETE", f"/containers/{cid}", want=204)
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def threads():
    return len(os.listdir(f"/proc/{pid}/task"))
for _ in range(20):
    one_round()
idle = threads()
before = rss()
until = time.monotonic() + secs
rounds = [0] * 50
def worker(i):
    while time.monotonic() < until:
        one_round()
        rounds[i] += 1
ws = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
start = time.monotonic()
for w in ws: w.start()
for w in ws: w.join()
took = time.monotonic() - start
deadline = time.monotonic() + 10
while threads() > idle and time.monotonic() < deadline:
    time.sleep(0.05)
after = rss()
n = sum(rounds)
print(f"{'ketch daemon: 50 clients, create/start/wait/rm':<48} {n / took:7.1f} rounds/s ({n} in {took:.0f} s)")
print(f"{'ketch daemon RSS before and after the clients':<48} {before} KiB -> {after} KiB")
EOF
if command -v docker >/dev/null; then
    if ! hyperfine -N -w 3 -r "$n" --export-csv "$work/t.csv" \
        "env DOCKER_HOST=unix://$sock docker run --rm --network none bench true" >/dev/null 2>"$work/err"; then
        echo "docker run through ketch daemon failed: $(tail -3 "$work/err")"
        exit 1
    fi
    awk -F, 'NR == 2 {printf "%-48s %7.1f ms (median)\n", "docker run --rm through ketch daemon", $4 * 1000}' "$work/t.csv"
fi
# The ketch CLI itself, embedded and through the daemon (one more hop: HTTP and the monitor's
# stream), and over mutual TLS on loopback.
for mode in embedded remote; do
    args=()
    [ "$mode" = remote ] && args=(-H "unix://$sock")
    hyperfine -N -w 3 -r "$n" --export-csv "$work/t.csv" \
        "$ketch ${args[*]} run --rm --network none bench true" >/dev/null 2>"$work/err" ||
        { echo "ketch run ($mode) failed: $(tail -3 "$work/err")"; exit 1; }
    awk -F, -v m="$mode" 'NR == 2 {printf "%-48s %7.1f ms (median)\n", "ketch run --rm (" m ")", $4 * 1000}' "$work/t.csv"
done
