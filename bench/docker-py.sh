#!/usr/bin/env bash
# docker-py 7.1.0's own integration tests, the conformance target of the daemon: the files
# for containers, exec, networks, volumes, images, health checks, the client, errors and
# regressions, run against `ketch daemon` (started here on a fresh root) or against any
# daemon DOCKER_HOST names (dockerd, to compare). The suite's test image, alpine:3.10, is the
# busybox fixture tagged so (and as alpine:latest, which the model tests use), and nothing
# is pulled. Prints pytest's counts, the failing tests, and those known not to apply here
# (swarm, plugins, Windows, Docker Hub).
#
#   bench/docker-py.sh DOCKER_PY_SRC [FILE...]
#   bench/docker-py.sh --venv-only      (makes the venv, for a run with no PyPI in reach)
#
# DOCKER_PY_SRC is a docker-py 7.1.0 source tree (its git tag 7.1.0; bring the repository
# with `git clone` or the workplace's fetch, then `git archive 7.1.0 | tar -x -C DIR`). The
# venv is made from PyPI with docker 7.1.0 and pytest 7.4.2 (what its dev extra pins).
# Needs root; builds ketch (release) unless DOCKER_HOST is set.
set -euo pipefail
venv=/var/tmp/ketch-docker-py-venv
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'docker[websockets]==7.1.0' pytest==7.4.2 pytest-timeout==2.1.0 paramiko
fi
[ "${1:-}" = --venv-only ] && exit 0
src=$(cd "${1:?usage: bench/docker-py.sh DOCKER_PY_SRC [FILE...]}" && pwd)
shift
here=$(cd "$(dirname "$0")/.." && pwd)
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(api_container_test.py api_exec_test.py api_network_test.py api_volume_test.py
        api_image_test.py api_healthcheck_test.py api_client_test.py client_test.py
        errors_test.py regression_test.py models_containers_test.py models_images_test.py
        models_networks_test.py models_volumes_test.py)
fi
[ -f "$src/tests/integration/base.py" ] || { echo "$src is not a docker-py source tree" >&2; exit 2; }
grep -q "TEST_IMG = 'alpine:3.10'" "$src/tests/integration/base.py" ||
    echo "warning: $src does not look like docker-py 7.1.0 (its test image differs)" >&2

work=$(mktemp -d /var/tmp/ketch-docker-py.XXXX)
daemon_pid=
ketch=
cleanup() {
    if [ -n "$ketch" ]; then
        k rm -f $(k ps -aq 2>/dev/null) >/dev/null 2>&1 || true
        k network prune -f >/dev/null 2>&1 || true
        k volume prune -af >/dev/null 2>&1 || true
    fi
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
    if [ -n "$ketch" ]; then
        ip link del "$KETCH_BRIDGE" 2>/dev/null || true
        nft delete table ip "ketch_$KETCH_BRIDGE" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
    (cd "$here" && cargo build --release -q -p ketch-cli -p ketch-shim)
    ketch=$here/target/release/ketch
    export KETCH_ROOT=$work/root KETCH_BRIDGE=ktpy$$ KETCH_IP_FORWARD=false
    k() { "$ketch" "$@"; }
    # The binary itself in the background (not the function: its subshell's PID would be
    # the one killed, and the daemon would outlive the run).
    "$ketch" daemon -H "unix://$work/ketch.sock" 2>"$work/daemon.log" &
    daemon_pid=$!
    for _ in $(seq 100); do [ -S "$work/ketch.sock" ] && break; sleep 0.1; done
    export DOCKER_HOST=unix://$work/ketch.sock
fi
echo "daemon: $DOCKER_HOST"
# The same test image for any daemon, through its API: the busybox fixture as the suite's
# alpine:3.10, and as plain `alpine` (latest), which the model tests run.
"$here/tests/fixtures/busybox-rootfs.sh" "$work/rootfs.tar"
docker import "$work/rootfs.tar" alpine:3.10 >/dev/null
docker tag alpine:3.10 alpine:latest

# The API version the suite is written for, as its own Makefile runs it (1.44), or the
# daemon's when that is older (dockerd 20.10 serves 1.41); DOCKER_TEST_API_VERSION overrides.
if [ -z "${DOCKER_TEST_API_VERSION:-}" ]; then
    served=$(docker version -f '{{.Server.APIVersion}}')
    DOCKER_TEST_API_VERSION=$(printf '%s\n1.44\n' "$served" | sort -V | head -1)
fi
export DOCKER_TEST_API_VERSION
echo "API version: $DOCKER_TEST_API_VERSION"

# The tests import the source tree's package (its version from the installed one).
cd "$src"
args=()
for f in "${files[@]}"; do args+=("tests/integration/$f"); done
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/pytest" -p no:cacheprovider --timeout 120 -q \
    -o addopts="" --junitxml="$work/junit.xml" "${args[@]}" >"$work/pytest.log" 2>&1 || true
tail -1 "$work/pytest.log"
# Kept for reading the failures: pytest's report and the daemon's log.
cp "$work/pytest.log" /var/tmp/ketch-docker-py.pytest.log
cp "$work/junit.xml" /var/tmp/ketch-docker-py.junit.xml
[ -f "$work/daemon.log" ] && cp "$work/daemon.log" /var/tmp/ketch-docker-py.daemon.log
echo "pytest's report: /var/tmp/ketch-docker-py.pytest.log (and .junit.xml, to compare runs)"
"$venv/bin/python" - "$work/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

# Tests that cannot pass on a Linux daemon outside a swarm with no plugins, on a machine
# that cannot reach Docker Hub, whatever the daemon: named (by the test's name or by what
# its failure says), with why, and counted apart.
NOT_HERE = {
    "swarm": "needs swarm mode",
    "plugin": "needs the plugin system",
    "windows": "Windows only",
}
BY_FAILURE = {
    "/swarm/": "needs swarm mode",
    "registry-1.docker.io": "pulls from Docker Hub, which this machine cannot reach",
    "scheme http+docker is invalid":
        "docker-py attaches over a WebSocket only to a TCP address (DOCKER_HOST=tcp://...)",
}
passed, failed, skipped, apart = [], [], [], []
for case in ET.parse(sys.argv[1]).iter("testcase"):
    name = f"{case.get('classname')}.{case.get('name')}"
    bad = [e for e in (case.find("failure"), case.find("error")) if e is not None]
    if case.find("skipped") is not None:
        skipped.append(name)
    elif bad:
        text = " ".join(f"{e.get('message', '')} {e.text or ''}" for e in bad)
        why = next((w for k, w in NOT_HERE.items() if k in name.lower()), None) or next(
            (w for k, w in BY_FAILURE.items() if k in text), None)
        (apart if why else failed).append((name, why))
    else:
        passed.append(name)
print(f"passed {len(passed)}, failed {len(failed)}, skipped {len(skipped)}, "
      f"not applicable {len(apart)}")
for name, _ in failed:
    print(f"FAILED {name}")
for name, why in apart:
    print(f"n/a    {name}: {why}")
EOF
