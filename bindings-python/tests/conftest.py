"""Fixtures: an engine on a fresh state root, embedded or through a daemon on that root.

The harness (tests/tests/python.rs) sets KETCH_TEST_ROOTFS (the busybox root file system
tarball), KETCH_BIN (the ketch binary, for the daemon and the CLI), KETCH_SHIM and
KETCH_IP_FORWARD, so that nothing here touches the host's forwarding. Each test's root
has a default bridge of its own; the harness removes them with the roots.
"""

import os
import socket
import subprocess
import time

import pytest

import ketch

ROOTFS = os.environ.get("KETCH_TEST_ROOTFS", "")
KETCH = os.environ.get("KETCH_BIN", "ketch")


def wait_for_socket(path, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the daemon did not come up")


class Daemon:
    """`ketch daemon` on a root, on a socket beside it; stopped by `stop`."""

    def __init__(self, root, sock):
        self.sock = sock
        self.proc = subprocess.Popen(
            [KETCH, "--root", str(root), "daemon", "-H", f"unix://{sock}"],
            stderr=subprocess.DEVNULL,
        )
        wait_for_socket(str(sock), self.proc)

    @property
    def url(self):
        return f"unix://{self.sock}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def clean(root):
    """Removes every container on the root, whatever a test left."""
    e = ketch.Engine(root=str(root))
    for c in e.containers.list(all=True):
        try:
            c.remove(force=True)
        except ketch.NotFound:
            pass
    e.networks.prune()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    yield r
    if r.exists():
        clean(r)


@pytest.fixture(params=["embedded", "remote"])
def engine(request, root, tmp_path):
    """An engine with the busybox image as `busybox:latest`."""
    local = ketch.Engine(root=str(root))
    local.images.import_(ROOTFS, "busybox", "latest")
    if request.param == "embedded":
        yield local
        return
    d = Daemon(root, tmp_path / "ketch.sock")
    try:
        yield ketch.connect(d.url)
    finally:
        d.stop()
