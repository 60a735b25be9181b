"""The SDK against `nucleus serve` run by an ordinary user: a throwaway user
with a subordinate id range, created by the test and removed after it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from nucleus_sdk import NucleusError, Sandbox

from conftest import Server, nucleus_bin, require_root

RANGE_START = 3_000_000 + (os.getpid() % 500) * 70_000


class UserServer(Server):
    """`nucleus serve` as `user`, with its default (per-user) state root."""

    def __init__(self, user: pwd.struct_passwd, runtime_dir: str):
        self.user = user
        self.runtime_dir = runtime_dir
        super().__init__(os.path.join(runtime_dir, "nucleus"))

    def start(self) -> None:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.user.pw_dir,
            "XDG_RUNTIME_DIR": self.runtime_dir,
        }
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid", str(self.user.pw_uid), "--regid", str(self.user.pw_gid),
             "--init-groups", "--", nucleus_bin(), "serve"],
            stdin=subprocess.DEVNULL, env=env, cwd=self.user.pw_dir,
        )
        from conftest import wait_for_socket

        wait_for_socket(self.socket, self.proc)


@pytest.fixture
def user_server():
    require_root()
    if not shutil.which("newuidmap") or not shutil.which("setpriv"):
        pytest.skip("skipped: needs newuidmap (uidmap) and setpriv")
    name = "nsdk%d" % (os.getpid() % 100000)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
                   check=True, capture_output=True)
    r = "%d-%d" % (RANGE_START, RANGE_START + 65535)
    runtime_dir = tempfile.mkdtemp(prefix="nsdk-run-")
    srv = None
    try:
        subprocess.run(["usermod", "--add-subuids", r, "--add-subgids", r, name], check=True, capture_output=True)
        user = pwd.getpwnam(name)
        os.chown(runtime_dir, user.pw_uid, user.pw_gid)
        os.chmod(runtime_dir, 0o700)
        srv = UserServer(user, runtime_dir)
        yield srv, user
    finally:
        if srv is not None:
            srv.stop()
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["usermod", "--del-subuids", r, "--del-subgids", r, name], capture_output=True)
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
        left = [] if srv is None else [
            p for p in os.listdir(srv.root) if not p.startswith(".") and os.path.isdir(os.path.join(srv.root, p))
        ]
        shutil.rmtree(runtime_dir, ignore_errors=True)
        assert not left, "sandboxes left behind: %s" % left


def test_an_ordinary_users_server_runs_sandboxes_in_a_user_namespace(user_server):
    srv, user = user_server
    with Sandbox.create(memory=None, socket=srv.socket) as sb:
        r = sb.run("id -u; cat /proc/self/uid_map")
        assert r.exit_code == 0, r.stderr
        lines = r.stdout.split("\n")
        assert lines[0] == "0"
        maps = [l.split() for l in lines[1:] if l.strip()]
        # Root inside is the user outside; the rest is the user's range.
        assert ["0", str(user.pw_uid), "1"] in maps, maps
        assert any(m[1] == str(RANGE_START) for m in maps), maps
        sb.files.write("/tmp/blob", bytes(range(256)))
        assert sb.files.read("/tmp/blob") == bytes(range(256))
        sid = sb.id
    assert not any(s["Id"] == sid for s in Sandbox.list(socket=srv.socket))
    # The state is the user's own.
    st = os.stat(srv.root)
    assert (st.st_uid, st.st_mode & 0o777) == (user.pw_uid, 0o700)


def test_a_limit_without_a_cgroup_is_refused_by_name(user_server):
    srv, _ = user_server
    with pytest.raises(NucleusError) as e:
        Sandbox.create(memory="256m", socket=srv.socket)
    assert "resources.memory" in str(e.value)
