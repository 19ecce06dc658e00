#!/usr/bin/env bash
# Moving a container between two engines on two hosts simulated on this machine (network
# namespaces on an underlay bridge, a ketch daemon per host, as the tests make them): an
# httpd with a 100 MB writable layer and a 100 MB named volume, published on a port.
# Downtime (the last answer from host A before, the first from host B after, as a client
# on the underlay polling both every 20 ms sees them) and total time of
#   - `ketch mv --with-volumes` (cold: stop, copy, start), and with --freeze, and
#   - the manual Docker way with the docker CLI against the same two daemons: stop,
#     commit, save | load, the volume through tar, run, rm.
# N rounds each, medians. Nothing leaves this machine.
#
#   bench/move.sh [N]     (default 3; needs root, the docker CLI; builds release)
set -euo pipefail
n=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release -q -p ketch-cli -p ketch-shim
ketch=$here/target/release/ketch
export KETCH_SHIM=$here/target/release/ketch-shim
work=$(mktemp -d /var/tmp/ketch-move-bench.XXXX)
tag=$$
ul=kmb-ul-$tag
hosts=(kmb-a-$tag kmb-b-$tag)
ips=(198.18.1.11 198.18.1.12)
# shellcheck source=bench/lib/hosts.sh
. "$here/bench/lib/hosts.sh"
kenv() { echo "KETCH_ROOT=$work/root$1 KETCH_BRIDGE=kmb$1$tag KETCH_IP_FORWARD=false"; }
k() {
    local i=$1; shift
    # shellcheck disable=SC2046
    inns "${hosts[$i]}" env $(kenv "$i") "$ketch" "$@"
}
d() { local i=$1; shift; docker -H "unix://$work/d$i.sock" "$@"; }
pids=()
cleanup() {
    for i in 0 1; do
        # shellcheck disable=SC2046
        k "$i" rm -f $(k "$i" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
        k "$i" volume prune -a -f >/dev/null 2>&1 || true
        k "$i" network prune -f >/dev/null 2>&1 || true
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    remove_hosts
    rm -rf "$work"
}
trap cleanup EXIT

make_hosts 198.18.1.1
# Published ports reached from the underlay are forwarded in the hosts' namespaces (their
# own setting, not the machine's).
for h in "${hosts[@]}"; do inns "$h" sysctl -qw net.ipv4.ip_forward=1; done
tests/fixtures/busybox-rootfs.sh "$work/rootfs.tar"
for i in 0 1; do
    k "$i" import "$work/rootfs.tar" bench >/dev/null
    # shellcheck disable=SC2046
    nsenter --net=/run/netns/"${hosts[$i]}" env $(kenv "$i") "$ketch" daemon \
        -H "unix://$work/d$i.sock" >/dev/null 2>"$work/daemon$i.log" &
    pids+=($!)
done
for i in 0 1; do until [ -S "$work/d$i.sock" ]; do sleep 0.05; done; done

# The client on the underlay: one line per answer, `HOST SECONDS`, until told to stop.
poll() {
    : >"$work/answers"
    inns "$ul" bash -c '
        while [ ! -e '"$work"'/stop ]; do
            for ip in '"${ips[0]} ${ips[1]}"'; do
                if out=$(curl -s -m 0.3 http://$ip:8080/) && [ "$out" = ok ]; then
                    echo "$ip $(date +%s.%N)"
                fi
            done
            sleep 0.02
        done' >>"$work/answers" &
    poller=$!
}
stop_poll() { touch "$work/stop"; wait "$poller" 2>/dev/null || true; rm -f "$work/stop"; }
# Seconds between the last answer from A before $1 (a time) and the first from B after.
downtime() {
    awk -v a="${ips[0]}" -v b="${ips[1]}" -v t0="$1" '
        $1 == a && $2 <= t0 + 600 { last = $2 }
        $1 == b && first == "" { first = $2 }
        END { if (first == "" || last == "") print "nan"; else printf "%.3f\n", first - last }' "$work/answers"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The container on host A: 100 MB in its writable layer, 100 MB in its volume.
make_web() {
    k 0 run -d --name web -p 8080:80 -v pages:/www bench sh -c \
        'echo ok > /www/index.html; exec httpd -f -p 80 -h /www' >/dev/null
    k 0 exec web sh -c 'head -c 100000000 /dev/urandom > /layer.bin; head -c 100000000 /dev/urandom > /www/volume.bin'
    until inns "$ul" curl -s -m 0.3 "http://${ips[0]}:8080/" >/dev/null; do sleep 0.05; done
}
clear_b() {
    # shellcheck disable=SC2046
    k 1 rm -f $(k 1 ps -aq) >/dev/null 2>&1 || true
    k 1 volume rm pages >/dev/null 2>&1 || true
    k 1 rmi -f moved >/dev/null 2>&1 || true
}

# One round of a way; prints "downtime total".
round() {
    local way=$1 t0 t1
    make_web
    poll
    sleep 0.5
    t0=$(date +%s.%N)
    case $way in
        ketch) k 0 mv --with-volumes web "unix://$work/d1.sock" >/dev/null 2>&1 ;;
        freeze) k 0 mv --freeze --with-volumes web "unix://$work/d1.sock" >/dev/null 2>&1 ;;
        docker)
            d 0 stop web >/dev/null
            d 0 commit web moved >/dev/null
            d 0 save moved | d 1 load >/dev/null
            d 1 volume create pages >/dev/null
            d 0 create --name vsrc -v pages:/v bench true >/dev/null
            d 1 create --name vdst -v pages:/v bench true >/dev/null
            d 0 cp vsrc:/v/. - | d 1 cp - vdst:/v
            d 0 rm vsrc >/dev/null
            d 1 rm vdst >/dev/null
            d 1 run -d --name web -p 8080:80 -v pages:/www moved sh -c \
                'exec httpd -f -p 80 -h /www' >/dev/null
            d 0 rm web >/dev/null
            d 0 volume rm pages >/dev/null
            d 0 rmi moved >/dev/null
            ;;
    esac
    until inns "$ul" curl -s -m 0.3 "http://${ips[1]}:8080/" >/dev/null; do sleep 0.02; done
    t1=$(date +%s.%N)
    sleep 0.2
    stop_poll
    echo "$(downtime "$t0") $(echo "$t1 - $t0" | bc)"
    clear_b
}

printf '%-34s %12s %12s\n' "way" "downtime s" "total s"
for way in ketch freeze docker; do
    : >"$work/$way"
    for _ in $(seq "$n"); do round "$way" >>"$work/$way"; done
    dt=$(cut -d' ' -f1 "$work/$way" | median)
    tt=$(cut -d' ' -f2 "$work/$way" | median)
    case $way in
        ketch) label="ketch mv --with-volumes" ;;
        freeze) label="ketch mv --freeze --with-volumes" ;;
        docker) label="docker stop/commit/save/load/run" ;;
    esac
    printf '%-34s %12s %12s\n' "$label" "$dt" "$tt"
done
