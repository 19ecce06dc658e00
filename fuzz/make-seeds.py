#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/: small real inputs
(layers, manifests, configs, references, requests, create bodies as the docker CLI sends
them) and hostile ones. The seeds are committed; run this only to change them. Files named
regress-* are inputs a fuzzer once broke the engine with; this leaves them alone."""

import gzip
import io
import json
import os
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar(entries, fmt=tarfile.GNU_FORMAT):
    """entries: (name, kind, data_or_linkname, extra) tuples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, arg, *extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_000_000
            ti.type = kind
            data = None
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = arg
            elif kind == tarfile.REGTYPE:
                data = arg if isinstance(arg, bytes) else arg.encode()
                ti.size = len(data)
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if extra:
                for k, v in extra[0].items():
                    setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def layers():
    plain = tar([
        ("etc/", D, None),
        ("etc/hostname", F, "ketch\n"),
        ("bin/", D, None),
        ("bin/busybox", F, b"\x7fELF" + b"\0" * 60),
        ("bin/sh", S, "busybox"),
        ("bin/ls", H, "bin/busybox"),
        ("tmp/", D, None, {"mode": 0o1777}),
        ("usr/bin/env", F, "#!/bin/sh\n", {"mode": 0o4755, "uid": 1000, "gid": 1000}),
    ])
    put("layer", "plain.tar", plain)
    put("layer", "plain.tar.gz", gzip.compress(plain, mtime=0))
    put("layer", "plain.tar.zst",
        subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout)
    put("layer", "whiteouts.tar", tar([
        ("etc/.wh.hostname", F, ""),
        ("var/", D, None),
        ("var/.wh..wh..opq", F, ""),
        ("var/new", F, "x"),
        (".wh.bin", F, ""),
    ]))
    put("layer", "pax.tar", tar([
        ("a/" + "long-name-" * 20 + "/file", F, "pax",
         {"pax_headers": {"SCHILY.xattr.user.k": "v", "mtime": "1700000000.123456789",
                          "uid": "4294967295", "gid": "x"}}),
        ("link-" + "y" * 120, S, "/" + "target/" * 30),
    ], fmt=tarfile.PAX_FORMAT))
    put("layer", "gnu-long.tar", tar([
        ("d" * 150 + "/f", F, "gnu long name"),
        ("l", S, "t" * 200),
    ]))
    put("layer", "special.tar", tar([
        ("dev/", D, None),
        ("dev/null", tarfile.CHRTYPE, None, {"devmajor": 1, "devminor": 3}),
        ("dev/sda", tarfile.BLKTYPE, None, {"devmajor": 8, "devminor": 0}),
        ("fifo", tarfile.FIFOTYPE, None),
    ]))
    # Hostile: every way out of the root.
    put("layer", "dotdot.tar", tar([("../ketch-fuzz-escaped", F, "out")]))
    put("layer", "dotdot-deep.tar", tar([("a/../../../ketch-fuzz-escaped", F, "out")]))
    put("layer", "absolute.tar", tar([("/tmp/ketch-fuzz-escaped", F, "out")]))
    put("layer", "abs-symlink.tar", tar([
        ("tmp", S, "/tmp"),
        ("tmp/ketch-fuzz-escaped", F, "out"),
    ]))
    put("layer", "rel-symlink.tar", tar([
        ("up", S, "../../.."),
        ("up/ketch-fuzz-escaped", F, "out"),
        ("up2", S, "a/../../../.."),
        ("up2/ketch-fuzz-escaped2", D, None),
    ]))
    put("layer", "symlink-chain.tar", tar([
        ("x", S, "y"),
        ("y", S, "z/.."),
        ("z", S, "/"),
        ("x/ketch-fuzz-escaped", F, "out"),
    ]))
    put("layer", "hardlink-out.tar", tar([
        ("passwd", H, "/etc/passwd"),
        ("out", H, "../../outside"),
        ("l", S, "/etc"),
        ("shadow", H, "l/shadow"),
    ]))
    put("layer", "replace-dir-with-link.tar", tar([
        ("d/", D, None),
        ("d", S, "/tmp"),
        ("d/ketch-fuzz-escaped", F, "out"),
    ]))
    put("layer", "whiteout-out.tar", tar([
        (".wh..", F, ""),
        ("l", S, "/tmp"),
        ("l/.wh.ketch-fuzz-victim", F, ""),
        ("l/.wh..wh..opq", F, ""),
    ]))
    # A header that claims 8 GiB and ends at once; one with a bad checksum; garbage.
    big = bytearray(tar([("big", F, "")]))
    big[124:136] = b"77777777777\0"
    put("layer", "huge-size.tar", bytes(big[:1024]))
    bad = bytearray(plain[:512])
    bad[148:156] = b"0000000\0"
    put("layer", "bad-checksum.tar", bytes(bad))
    put("layer", "truncated.tar", plain[:700])
    put("layer", "gzip-garbage.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    put("layer", "empty.tar", b"\0" * 1024)


def image_json():
    sha = lambda c: "sha256:" + c * 64
    cfg = {
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}},
                   "Volumes": {"/data": {}}, "Labels": {"a": "b"}, "User": "1000:1000"},
        "rootfs": {"type": "layers", "diff_ids": [sha("a"), sha("b")]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "import", "comment": "c"}],
    }
    put("image_json", "config.json", json.dumps(cfg))
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha("c"), "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha("d"), "size": 5}],
        "annotations": {"org.opencontainers.image.created": "2024"},
    }
    put("image_json", "manifest.json", json.dumps(manifest))
    docker = dict(manifest, mediaType="application/vnd.docker.distribution.manifest.v2+json")
    put("image_json", "docker-manifest.json", json.dumps(docker))
    index = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha("e"), "size": 400,
             "platform": {"architecture": "amd64", "os": "linux"},
             "annotations": {"io.containerd.image.name": "docker.io/library/busybox:1.36",
                             "org.opencontainers.image.ref.name": "1.36"}},
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha("f"), "size": 300,
             "annotations": {"org.opencontainers.image.ref.name": "registry.example:5000/me/bb:1"}},
        ],
    }
    put("image_json", "index.json", json.dumps(index))
    put("image_json", "archive-manifest.json", json.dumps([
        {"Config": "blobs/sha256/" + "c" * 64, "RepoTags": ["busybox:1.36", "BAD TAG"],
         "Layers": ["blobs/sha256/" + "d" * 64, "../../etc/passwd", "/abs/layer.tar"]}]))
    # Hostile.
    put("image_json", "schema1.json", json.dumps(dict(manifest, schemaVersion=1)))
    put("image_json", "bad-digests.json", json.dumps(dict(
        cfg, rootfs={"type": "layers", "diff_ids": ["sha256:xyz", "md5:00", "sha256:" + "A" * 64, ""]})))
    put("image_json", "huge-numbers.json", json.dumps(dict(
        manifest, schemaVersion=18446744073709551617,
        config=dict(manifest["config"], size=-1))))
    put("image_json", "deep.json", "[" * 5000 + "]" * 5000)
    put("image_json", "not-utf8.json", b'{"os":"\xff\xfe","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}')


def references():
    for i, r in enumerate([
        "busybox", "busybox:1.36", "docker.io/library/busybox:latest",
        "registry.example:5000/me/bb:1",
        "localhost/x@sha256:" + "a" * 64, "[::1]:5000/a/b:c@sha256:" + "0" * 64,
        "a.b/c", "Upper/x", "x__y.z-1/w:_t", "a" * 300, ":tag", "x@sha256:short",
        "x:" + "t" * 129, "docker.io/library", "a//b", "-a", "x:1@sha256:" + "f" * 64,
    ]):
        put("reference", "r%02d" % i, r)


def dockerfiles():
    for i, d in enumerate([
        "FROM busybox\nRUN echo hi\n",
        "# syntax=docker/dockerfile:1\n# escape=`\nARG B=busybox\nFROM $B AS one\nRUN a `\n  b\nCOPY --from=one --chown=1:1 a* /x/\n",
        "FROM scratch\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-'A' 3<<b /d/\n\tx\n\tA\ny\nb\n",
        "FROM scratch\nENV A=1 B=\"two words\" C=${A:-x}${B:+y}\nLABEL \"k\"='v' x=${NOPE:?must}\n",
        "FROM scratch\nHEALTHCHECK --interval=1m30s --retries=3 CMD [\"true\"]\nSHELL [\"/bin/sh\", \"-c\"]\nONBUILD RUN x\n",
        "FROM scratch\nCMD [\"a\", 'b']\n",
        "FROM scratch\nRUN <<EOF\nnever ends\n",
        "\ufeffFROM scratch\r\nEXPOSE ${P:-80}/tcp $Q\r\nVOLUME [\"/v\"]\r\nWORKDIR ${W:-/w}\r\n",
        "FROM scratch\nENV X=" + "${A:-" * 200 + "\n",
        "FROM scratch AS Up\nWORKDIR ${V#v}/${V//./-}/${V%%.*}/${V/[0-9]/x}\nRUN cat << 'E-1' 3<<\\F\nx\nE-1\ny\nF\n",
    ]):
        put("dockerfile", "d%02d" % i, d)


def requests():
    body = json.dumps(create_body())
    put("http_request", "ping", "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    put("http_request", "create",
        "POST /v1.47/containers/create?name=web HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n%s" % (len(body), body))
    put("http_request", "chunked-network",
        "POST /networks/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10\r\n{\"Name\":\"app\",\"I\r\n2b;ext=1\r\nPAM\":{\"Config\":[{\"Subnet\":\"10.5.0.0/24\"}]}}\r\n0\r\nTrailer: x\r\n\r\n")
    put("http_request", "pipelined",
        "GET /containers/json?all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D HTTP/1.1\r\n\r\n"
        "POST /volumes/create HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"Name\":\"data\"}"
        "GET /events?since=10.5&until=2024-01-01T00:00:00Z&filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D HTTP/1.0\r\n\r\n")
    put("http_request", "exec-start",
        "POST /exec/abc/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 16\r\n\r\n{\"Detach\":false}")
    put("http_request", "bad-percent", "GET /v1.x/%zz%%/containers/%E2%82?x=%&=%41+b HTTP/1.1\r\n\r\n")
    put("http_request", "huge-length",
        "POST /containers/create HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}")
    put("http_request", "huge-chunk",
        "POST /containers/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n0\r\n\r\n")
    put("http_request", "bare-lf", "GET /info HTTP/1.1\nExpect: 100-continue\n\n")


def create_body():
    return {
        "Hostname": "", "User": "nobody", "Env": ["A=1"], "Cmd": ["sh", "-c", "echo hi"],
        "Image": "busybox", "WorkingDir": "/tmp", "Entrypoint": None, "Labels": {"l": "v"},
        "OpenStdin": True, "Tty": True, "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGTERM", "StopTimeout": 5, "Healthcheck": None,
        "HostConfig": {
            "Binds": ["data:/data", "/srv/www:/www:ro", "/cache"],
            "Mounts": [{"Type": "volume", "Source": "data", "Target": "/d", "ReadOnly": True},
                       {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 16777216, "Mode": 1777}}],
            "Tmpfs": {"/tmp": "size=16m,mode=1777"},
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostPort": ""}]},
            "PublishAllPorts": True, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "AutoRemove": False, "NetworkMode": "app", "Memory": 67108864, "NanoCpus": 500000000,
            "PidsLimit": 50, "CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"], "ReadonlyRootfs": True, "Init": True,
            "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}],
            "DeviceCgroupRules": ["c 241:* rwm"], "VolumesFrom": ["web:ro"], "Dns": ["10.0.0.1"],
            "ExtraHosts": ["db.local:10.0.0.2"], "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
        },
        "NetworkingConfig": {"EndpointsConfig": {"app": {"Aliases": ["database"], "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}},
    }


def create_json():
    put("create_json", "container.json", json.dumps(create_body()))
    put("create_json", "minimal.json", '{"Image":"busybox"}')
    put("create_json", "network.json", json.dumps({
        "Name": "app", "Driver": "bridge", "Internal": True, "Labels": {"a": "b"},
        "IPAM": {"Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "10.5.0.128/25"}]}}))
    put("create_json", "volume.json", json.dumps({
        "Name": "scratch", "Driver": "local", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}}))
    put("create_json", "hostile.json", json.dumps({
        "Image": "busybox", "Env": [1, None, "=", "A"], "Cmd": "not a list",
        "ExposedPorts": {"99999/tcp": {}, "80/sctp-ish": {}, "-1": {}},
        "HostConfig": {"Binds": [":", "a:b:c:d", "::ro"], "Memory": -1, "NanoCpus": 1e300,
                       "PortBindings": {"0/tcp": [{"HostPort": "70000-1"}]},
                       "Tmpfs": {"/t": "size=99999999999999999999g,mode=99999"},
                       "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 18446744073709551615},
                       "Devices": [{"PathOnHost": "", "PathInContainer": "relative"}]},
        "Name": "", "IPAM": {"Config": [{"Subnet": "10.0.0.0/33", "Gateway": "300.1.1.1"}]}}))


if __name__ == "__main__":
    layers()
    image_json()
    references()
    dockerfiles()
    requests()
    create_json()
