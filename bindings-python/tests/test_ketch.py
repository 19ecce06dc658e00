"""The Python front door: the same story embedded and through a daemon, docker-py's way."""

import concurrent.futures
import os
import socket
import subprocess
import sys
import time

import pytest

import ketch

NONE = {"network": "none"}
KETCH = os.environ.get("KETCH_BIN", "ketch")


def wait_until(what, secs, cond):
    """Polls `cond` every 20 ms until it holds; fails naming `what` once `secs` have passed
    (a hang guard, not a timing claim)."""
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {secs} s waiting for {what}")
        time.sleep(0.02)


def test_run_and_remove_returns_the_output(engine):
    assert engine.containers.run("busybox", "echo hi", remove=True, **NONE) == b"hi\n"
    out = engine.containers.run(
        "busybox",
        ["sh", "-c", "echo $GREETING; echo err >&2"],
        environment={"GREETING": "hello"},
        remove=True,
        stderr=True,
        **NONE,
    )
    assert out == b"hello\nerr\n"
    assert engine.containers.list(all=True) == []


def test_devices_as_docker_py_gives_them(engine):
    out = engine.containers.run(
        "busybox",
        ["sh", "-c", "ls -l /dev/xnull; mknod /tmp/k c 241 7; cat /tmp/k; true"],
        devices=["/dev/null:/dev/xnull:rw"],
        device_cgroup_rules=["c 241:7 r"],
        remove=True,
        stderr=True,
        **NONE,
    )
    # Past the cgroup (the rule allows the read), no driver behind the number.
    assert b"1,   3" in out and b"No such device or address" in out
    with pytest.raises(ketch.InvalidArgument, match="relative: device paths must be absolute"):
        engine.containers.run("busybox", "true", devices=["relative"], remove=True, **NONE)


def test_a_container_through_its_life(engine):
    c = engine.containers.run(
        "busybox",
        ["sh", "-c", "echo started; sleep 100"],
        detach=True,
        name="life",
        labels={"tier": "test"},
        **NONE,
    )
    assert isinstance(c, ketch.Container)
    assert c.name == "life" and c.status == "running"
    assert c.labels == {"tier": "test"}
    assert engine.containers.get("life") == c
    assert [x.id for x in engine.containers.list()] == [c.id]
    assert c.attrs["Config"]["Image"] == "busybox"
    code, output = c.exec_run(["sh", "-c", "echo in-exec; exit 4"])
    assert (code, output) == (4, b"in-exec\n")
    assert c.exec_run("cat /etc/hostname").exit_code == 0
    wait_until("the first log line", 10, lambda: c.logs() == b"started\n")
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] == 137
    c.reload()
    assert c.status == "exited"
    c.remove()
    with pytest.raises(ketch.NotFound, match="^No such container: life$"):
        engine.containers.get("life")


def free_ports(n):
    """`n` distinct TCP ports free on the host's loopback now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(port):
    """What answers `GET /` at 127.0.0.1:`port`; None while nothing does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data or None
                data += chunk
    except OSError:
        return None


def test_published_ports_reach_the_container(engine, root):
    web, local = free_ports(2)
    c = engine.containers.run(
        "busybox",
        [
            "sh",
            "-c",
            "mkdir /www && echo published > /www/index.html"
            " && httpd -p 8081 -h /www && exec httpd -f -p 80 -h /www",
        ],
        detach=True,
        ports={"80/tcp": web, 8081: ("127.0.0.1", local)},
    )
    # As inspect and `ketch port` show them: all addresses for the first, loopback only for
    # the second, whose key had no protocol (TCP then).
    assert c.attrs["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": str(web)}],
        "8081/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(local)}],
    }
    assert c.attrs["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": str(web)}
    ]
    assert c.attrs["NetworkSettings"]["Ports"]["8081/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(local)}
    ]
    out = subprocess.run(
        [KETCH, "--root", str(root), "port", c.id], check=True, capture_output=True, text=True
    ).stdout
    assert f"80/tcp -> 0.0.0.0:{web}\n" in out and f"8081/tcp -> 127.0.0.1:{local}\n" in out
    # A connection to each from the host reaches httpd in the container.
    for port in (web, local):
        wait_until(f"an answer at 127.0.0.1:{port}", 20, lambda: http_get(port) is not None)
        answer = http_get(port)
        assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\n\r\npublished\n"), answer
    c.remove(force=True)


def test_logs_stream_until_the_container_stops(engine):
    # It says 1, then 2 and 3 only on SIGUSR1, sent once the stream has given 1: what the
    # stream yields after that came after it began, and it ends when the container stops.
    c = engine.containers.run(
        "busybox",
        ["sh", "-c", "trap 'echo 2; echo 3; exit 5' USR1; echo 1; sleep 1000 & wait"],
        detach=True,
        **NONE,
    )
    chunks = []
    for chunk in c.logs(stream=True):
        chunks.append(chunk)
        if b"".join(chunks) == b"1\n":
            c.kill("USR1")
    assert b"".join(chunks) == b"1\n2\n3\n"
    assert c.wait()["StatusCode"] == 5
    c.remove()


def test_errors_carry_their_kind(engine):
    with pytest.raises(ketch.NotFound, match="^No such image: no-such-image:1$"):
        engine.images.get("no-such-image:1")
    with pytest.raises(ketch.NotFound, match="^No such image: no-such-image:1$"):
        engine.containers.run("no-such-image:1", "true")
    with pytest.raises(ketch.NotFound, match="^No such container: no-such-container$") as e:
        engine.containers.get("no-such-container")
    # Every kind is an EngineError, as the README says.
    assert isinstance(e.value, ketch.EngineError)
    with pytest.raises(ketch.ContainerError) as e:
        engine.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True, **NONE)
    assert e.value.exit_status == 3 and e.value.stderr == b"bad\n"
    assert str(e.value).endswith("returned non-zero exit status 3: bad")
    c = engine.containers.create("busybox", "true", name="taken", **NONE)
    taken = f'name "/taken" is already in use by container "{c.id}"'
    with pytest.raises(ketch.Conflict, match=taken):
        engine.containers.create("busybox", "true", name="taken", **NONE)
    c.remove()
    with pytest.raises(TypeError, match='^unexpected keyword argument "no_such_option"$'):
        engine.containers.create("busybox", "true", no_such_option=1)


def test_images_networks_volumes(engine, tmp_path):
    img = engine.images.get("busybox")
    assert "busybox:latest" in img.tags
    assert img.tag("mine", "1")
    assert "mine:1" in engine.images.get("mine:1").tags
    assert any("mine:1" in i.tags for i in engine.images.list())
    engine.images.remove("mine:1")
    with pytest.raises(ketch.NotFound, match="^No such image: mine:1$"):
        engine.images.get("mine:1")
    n = engine.networks.create("pynet", labels={"a": "b"})
    assert engine.networks.get("pynet").id == n.id and n.name == "pynet"
    assert "pynet" in [x.name for x in engine.networks.list()]
    n.remove()
    with pytest.raises(ketch.NotFound, match="^network pynet not found$"):
        engine.networks.get("pynet")
    # Driver options reach the driver, which names the one it does not read.
    with pytest.raises(
        ketch.InvalidArgument,
        match="network option com.docker.network.bridge.name is not supported",
    ):
        engine.networks.create("pyopt", options={"com.docker.network.bridge.name": "x"})
    assert "pyopt" not in [x.name for x in engine.networks.list()]
    # IPv6: a unique local /64 picked, and an address of it asked for at connect.
    six = engine.networks.create("py6", enable_ipv6=True)
    assert six.attrs["EnableIPv6"] is True
    pool = six.attrs["IPAM"]["Config"][1]["Subnet"]
    assert pool.startswith("fd") and pool.endswith("::/64"), pool
    c = engine.containers.create("busybox", ["sleep", "100"])
    six.connect(c, ipv6_address=pool.replace("::/64", "::9"), link_local_ips=["169.254.3.3"])
    c.reload()
    ipam = c.attrs["NetworkSettings"]["Networks"]["py6"]["IPAMConfig"]
    assert ipam == {"IPv6Address": pool.replace("::/64", "::9"), "LinkLocalIPs": ["169.254.3.3"]}
    c.remove(force=True)
    six.remove()
    v = engine.volumes.create("pyvol", labels={"k": "v"})
    assert v.attrs["Labels"] == {"k": "v"}
    out = engine.containers.run(
        "busybox",
        ["sh", "-c", "echo kept > /data/f; cat /data/f"],
        volumes={"pyvol": {"bind": "/data", "mode": "rw"}},
        remove=True,
        **NONE,
    )
    assert out == b"kept\n"
    assert "pyvol" in [x.name for x in engine.volumes.list()]
    engine.volumes.get("pyvol").remove()
    with pytest.raises(ketch.NotFound, match="pyvol: no such volume$"):
        engine.volumes.get("pyvol")


def test_a_container_moves_to_another_engine(engine, tmp_path, request):
    """To a daemon on another root: the container, its changes and its labels go; it runs
    there, and is gone here."""
    from conftest import Daemon, clean

    other = tmp_path / "other"
    d = Daemon(other, tmp_path / "other.sock")
    try:
        dest = ketch.connect(d.url)
        c = engine.containers.run(
            "busybox",
            ["sh", "-c", "echo moved > /f; exec sleep 100"],
            detach=True,
            labels={"k": "v"},
            **NONE,
        )
        moved = c.move(dest, name="moved")
        assert moved.id == c.id and moved.name == "moved"
        assert moved.attrs["State"]["Running"] is True
        assert moved.labels == {"k": "v"}
        assert moved.exec_run(["cat", "/f"]).output == b"moved\n"
        with pytest.raises(ketch.NotFound):
            engine.containers.get(c.id)
        moved.remove(force=True)
        # An engine embedded in this process: a destination for an embedded engine (two
        # roots, one process), none for a daemon, which cannot reach it.
        c2 = engine.containers.run("busybox", ["sleep", "100"], detach=True, **NONE)
        local = ketch.Engine(root=str(other))
        if request.node.callspec.params["engine"] == "embedded":
            c2.move(local, name="moved2").remove(force=True)
        else:
            with pytest.raises(ketch.InvalidArgument, match="give the destination as unix://"):
                c2.move(local, name="moved2")
            c2.remove(force=True)
    finally:
        d.stop()
        clean(other)


def test_commit_diff_and_top(engine):
    c = engine.containers.run("busybox", ["sh", "-c", "touch /made; sleep 100"], detach=True, **NONE)
    wait_until("/made in the diff", 10, lambda: any(d["Path"] == "/made" for d in c.diff()))
    assert {"Path": "/made", "Kind": 1} in c.diff()
    top = c.top()
    assert "PID" in top["Titles"] and len(top["Processes"]) >= 1
    img = c.commit("committed", "1", changes=['CMD ["ls", "/made"]'])
    assert "committed:1" in img.tags
    assert engine.containers.run("committed:1", remove=True, **NONE) == b"/made\n"
    c.remove(force=True)


def test_with_and_eight_threads_at_once(engine):
    with engine as e:

        def one(i):
            return e.containers.run("busybox", ["echo", str(i)], remove=True, **NONE)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(one, range(16)))
    assert outs == [f"{i}\n".encode() for i in range(16)]
    assert e.containers.list(all=True) == []


def test_events_of_a_run(engine):
    since = time.time()
    c = engine.containers.run("busybox", "true", detach=True, **NONE)
    c.wait()
    c.remove()
    events = [
        e["Action"]
        for e in engine.events(since=since, until=time.time(), decode=True)
        if e["Actor"]["ID"] == c.id
    ]
    assert events == ["create", "start", "die", "destroy"]


def test_a_detached_container_outlives_the_script(engine, root, tmp_path):
    script = tmp_path / "start.py"
    script.write_text(
        "import ketch, sys\n"
        "e = ketch.Engine(root=sys.argv[1])\n"
        "c = e.containers.run('busybox', 'sleep 100', detach=True, name='outlives', network='none')\n"
        "print(c.id)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script), str(root)], check=True, capture_output=True
    )
    cid = out.stdout.decode().strip()
    c = engine.containers.get("outlives")
    assert c.id == cid and c.status == "running"
    c.remove(force=True)


class Registry:
    """`ketch registry serve` on a loopback port of its own, with the harness's htpasswd
    (user `py`, password `thon`)."""

    def __init__(self, tmp_path):
        self.proc = subprocess.Popen(
            [KETCH, "--root", str(tmp_path / "registry"), "registry", "serve",
             "--addr", "127.0.0.1:0", "--htpasswd", os.environ["KETCH_TEST_HTPASSWD"]],
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stderr.readline()
        self.addr = line.split("://")[1].split()[0]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_push_and_pull_through_a_registry(engine, tmp_path):
    reg = Registry(tmp_path)
    try:
        image = f"{reg.addr}/py/bb"
        engine.images.get("busybox").tag(image, "1")
        with pytest.raises(ketch.PermissionDenied, match="unauthorized"):
            engine.images.push(image, "1")
        with pytest.raises(ketch.PermissionDenied):
            engine.login("py", "wrong", registry=reg.addr)
        assert engine.login("py", "thon", registry=reg.addr) == {"Status": "Login Succeeded"}
        progress = list(engine.images.push(image, "1", stream=True))
        assert any(p.get("status") == "Pushed" for p in progress), progress
        digest = next(p["aux"]["Digest"] for p in progress if "aux" in p)
        assert digest.startswith("sha256:")
        # Into another root, with the credentials given to the call.
        other = ketch.Engine(root=str(tmp_path / "other"))
        auth = {"username": "py", "password": "thon"}
        seen = [p.get("status") for p in other.images.pull(image, "1", auth_config=auth, stream=True)]
        assert "Pull complete" in seen and any(s.startswith("Digest: ") for s in seen if s), seen
        img = other.images.pull(image, "1", auth_config=auth)
        assert f"{image}:1" in img.tags
        assert img.attrs["RepoDigests"] == [f"{image}@{digest}"]
        out = other.containers.run(f"{image}:1", ["echo", "pulled"], remove=True, **NONE)
        assert out == b"pulled\n"
        with pytest.raises(ketch.NotFound, match="not found"):
            other.images.pull(f"{reg.addr}/py/none", "1", auth_config=auth)
        with pytest.raises(ketch.PermissionDenied):
            list(other.images.pull(image, "1", stream=True))
        for c in other.containers.list(all=True):
            c.remove(force=True)
        other.networks.prune()
    finally:
        reg.stop()


def test_build(engine, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "ARG WHO=world\n"
        "COPY hello.txt /\n"
        'RUN echo "hello $WHO" >> /hello.txt\n'
        'CMD ["cat", "/hello.txt"]\n'
    )
    (ctx / "hello.txt").write_text("from the context\n")
    image, logs = engine.images.build(path=str(ctx), tag="pybuilt:1", buildargs={"WHO": "python"})
    assert "pybuilt:1" in image.tags
    assert any(m.get("stream", "").startswith("Step 4/5 : RUN") for m in logs), logs
    assert next(m["aux"]["ID"] for m in logs if "aux" in m) == image.id
    assert engine.containers.run("pybuilt:1", remove=True, **NONE) == b"from the context\nhello python\n"
    # Again, streamed: every step from the cache, the same image.
    msgs = list(
        engine.images.build(path=str(ctx), tag="pybuilt:1", buildargs={"WHO": "python"}, stream=True)
    )
    assert sum("Using cache" in m.get("stream", "") for m in msgs) == 4, msgs
    assert next(m["aux"]["ID"] for m in msgs if "aux" in m) == image.id
    # A failing step raises, saying which and how.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
    with pytest.raises(ketch.EngineError, match="returned a non-zero code: 4"):
        engine.images.build(path=str(ctx))
    assert engine.containers.list(all=True) == []
