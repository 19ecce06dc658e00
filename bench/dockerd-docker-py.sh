#!/usr/bin/env bash
# The peer's side of bench/docker-py.sh: the same suite against dockerd (Debian's docker.io,
# 20.10), on this machine, to name the tests a daemon can pass here. containerd and dockerd
# run in a network namespace and a mount namespace of their own, with their roots in a
# temporary directory, so nothing they make (bridges, firewall rules, mounts) outlives the
# run; the suite runs in that network namespace too, where the ports it publishes are.
#
#   bench/dockerd-docker-py.sh DOCKER_PY_SRC [DOCKER_ROOT] [FILE...]
#
# DOCKER_ROOT is where docker.io, containerd, runc and tini are unpacked (`apt-get download
# docker.io containerd runc tini`, then `dpkg -x` each into it), or / where they are
# installed (the default). Needs root. Prints what bench/docker-py.sh prints.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:?usage: bench/dockerd-docker-py.sh DOCKER_PY_SRC [DOCKER_ROOT] [FILE...]}" && pwd)
droot=$(cd "${2:-/}" && pwd)
shift $(($# >= 2 ? 2 : 1))
export PATH=$droot/usr/bin:$droot/usr/sbin:$PATH
command -v dockerd >/dev/null && command -v containerd >/dev/null ||
    { echo "no dockerd and containerd under $droot" >&2; exit 2; }
"$here/bench/docker-py.sh" --venv-only

work=$(mktemp -d /var/tmp/dockerd-py.XXXX)
ns=dockerd-py-$$
ip netns add "$ns"
holder=
# dockerd's cgroups (`docker` in each hierarchy) are the host's, not the namespaces': those
# this run makes go after it.
cgroups_before=$(ls -d /sys/fs/cgroup/*/docker 2>/dev/null || true)
cleanup() {
    # The daemons' mount namespace goes with its last process; the network namespace with
    # its name.
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    for d in /sys/fs/cgroup/*/docker; do
        [ -d "$d" ] && ! grep -qxF "$d" <<<"$cgroups_before" && rmdir "$d" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
nsenter --net="/run/netns/$ns" ip link set lo up
# One shell holds both daemons in the new mount namespace and stops them when killed.
nsenter --net="/run/netns/$ns" unshare -m --propagation private sh -c '
    work=$1
    containerd --address "$work/containerd.sock" --root "$work/containerd" \
        --state "$work/containerd-state" >"$work/containerd.log" 2>&1 &
    c=$!
    dockerd --containerd "$work/containerd.sock" --data-root "$work/docker" \
        --exec-root "$work/exec" --pidfile "$work/docker.pid" \
        -H "unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
    d=$!
    trap "kill $d; wait $d; kill $c; wait $c; exit 0" TERM
    wait
' sh "$work" &
holder=$!
for _ in $(seq 300); do
    [ -S "$work/docker.sock" ] && DOCKER_HOST=unix://$work/docker.sock docker info >/dev/null 2>&1 && break
    sleep 0.1
done
DOCKER_HOST=unix://$work/docker.sock docker version -f 'dockerd {{.Server.Version}}, API {{.Server.APIVersion}}' ||
    { cat "$work/dockerd.log" >&2; exit 1; }
DOCKER_HOST=unix://$work/docker.sock nsenter --net="/run/netns/$ns" \
    "$here/bench/docker-py.sh" "$src" "$@"
