"""Fixtures: a real `nucleus serve` on a private state root, started by the
test and stopped after it, with a check that no sandbox is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def nucleus_bin() -> str:
    b = os.environ.get("NUCLEUS_BIN") or str(REPO / "target" / "debug" / "nucleus")
    if not os.path.exists(b):
        pytest.skip("skipped: no nucleus binary at %s (cargo build first, or set NUCLEUS_BIN)" % b)
    return b


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("skipped: sandboxes need root in this suite")


def wait_for_socket(path: str, proc: subprocess.Popen, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("nucleus serve exited with %s" % proc.returncode)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise RuntimeError("nucleus serve did not listen on %s" % path)


class Server:
    """One `nucleus serve`; `restart()` stops it and starts another on the same root."""

    def __init__(self, root: str, extra=()):
        self.root = root
        self.socket = os.path.join(root, "api.sock")
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [nucleus_bin(), "--root", self.root, "serve", "--socket", self.socket, *self.extra],
            stdin=subprocess.DEVNULL,
        )
        wait_for_socket(self.socket, self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def containers_under(root: str):
    return [p for p in os.listdir(root) if not p.startswith(".") and os.path.isdir(os.path.join(root, p))]


@pytest.fixture
def server():
    require_root()
    root = tempfile.mkdtemp(prefix="nucleus-sdk-test-")
    os.chmod(root, 0o755)
    srv = Server(root)
    try:
        yield srv
    finally:
        # Whatever a test left, `rm -f` through the CLI removes it.
        for cid in containers_under(root):
            subprocess.run([nucleus_bin(), "--root", root, "rm", "-f", cid], capture_output=True)
        srv.stop()
        leftovers = containers_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, "sandboxes left behind: %s" % leftovers
