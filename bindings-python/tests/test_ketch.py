"""The Python front door: the same story embedded and through a daemon, docker-py's way."""

import concurrent.futures
import os
import subprocess
import sys
import time

import pytest

import ketch

NONE = {"network": "none"}


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
    with pytest.raises(ketch.InvalidArgument):
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
    for _ in range(100):
        if c.logs() == b"started\n":
            break
    assert c.logs() == b"started\n"
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] == 137
    c.reload()
    assert c.status == "exited"
    c.remove()
    with pytest.raises(ketch.NotFound):
        engine.containers.get("life")


def test_logs_stream_until_the_container_stops(engine):
    c = engine.containers.run(
        "busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"], detach=True, **NONE
    )
    chunks = list(c.logs(stream=True))
    assert b"".join(chunks) == b"1\n2\n3\n"
    c.remove()


def test_errors_carry_their_kind(engine):
    with pytest.raises(ketch.NotFound):
        engine.images.get("no-such-image:1")
    with pytest.raises(ketch.NotFound):
        engine.containers.run("no-such-image:1", "true")
    with pytest.raises(ketch.EngineError):
        engine.containers.get("no-such-container")
    with pytest.raises(ketch.ContainerError) as e:
        engine.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True, **NONE)
    assert e.value.exit_status == 3 and e.value.stderr == b"bad\n"
    c = engine.containers.create("busybox", "true", name="taken", **NONE)
    with pytest.raises(ketch.Conflict):
        engine.containers.create("busybox", "true", name="taken", **NONE)
    c.remove()
    with pytest.raises(TypeError):
        engine.containers.create("busybox", "true", no_such_option=1)


def test_images_networks_volumes(engine, tmp_path):
    img = engine.images.get("busybox")
    assert "busybox:latest" in img.tags
    assert img.tag("mine", "1")
    assert "mine:1" in engine.images.get("mine:1").tags
    assert any("mine:1" in i.tags for i in engine.images.list())
    engine.images.remove("mine:1")
    with pytest.raises(ketch.NotFound):
        engine.images.get("mine:1")
    n = engine.networks.create("pynet", labels={"a": "b"})
    assert engine.networks.get("pynet").id == n.id and n.name == "pynet"
    assert "pynet" in [x.name for x in engine.networks.list()]
    n.remove()
    with pytest.raises(ketch.NotFound):
        engine.networks.get("pynet")
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
    with pytest.raises(ketch.NotFound):
        engine.volumes.get("pyvol")


def test_commit_diff_and_top(engine):
    c = engine.containers.run("busybox", ["sh", "-c", "touch /made; sleep 100"], detach=True, **NONE)
    for _ in range(100):
        if any(d["Path"] == "/made" for d in c.diff()):
            break
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
