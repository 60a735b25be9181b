"""The SDK against a real `nucleus serve`: every sandbox is a real container."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import stat
import subprocess
import tarfile
import tempfile
import time

import httpx
import pytest

from nucleus_sdk import AsyncSandbox, ExecError, NucleusError, Sandbox

from conftest import Server, containers_under, nucleus_bin, require_root


def test_create_run_and_kill(server):
    with Sandbox.create(memory="256m", timeout=60, env={"GREETING": "hi"}, socket=server.socket) as sb:
        r = sb.run("echo $GREETING from $(hostname); echo oops >&2; exit 3")
        assert r.exit_code == 3
        assert r.stdout.startswith("hi from ")
        assert r.stderr == "oops\n"
        # What the process observes: no capabilities, no_new_privs, a pid namespace.
        status = sb.run(["cat", "/proc/self/status"]).stdout
        assert "CapEff:\t0000000000000000" in status
        assert "NoNewPrivs:\t1" in status
        # The memory limit is in the sandbox's cgroup.
        assert sb.stats()["mem_limit"] == 256 << 20
        assert any(s["Id"] == sb.id for s in Sandbox.list(socket=server.socket))
        sid = sb.id
    assert not any(s["Id"] == sid for s in Sandbox.list(socket=server.socket))
    assert containers_under(server.root) == []


def test_stdout_streams_as_it_comes(server):
    with Sandbox.create(socket=server.socket) as sb:
        seen = []
        t0 = time.monotonic()
        r = sb.run(
            "echo first; sleep 1; echo second >&2; echo third",
            on_stdout=lambda s: seen.append(("out", s, time.monotonic() - t0)),
            on_stderr=lambda s: seen.append(("err", s, time.monotonic() - t0)),
        )
        assert r.exit_code == 0
        assert r.stdout == "first\nthird\n" and r.stderr == "second\n"
        first = next(x for x in seen if x[1] == "first\n")
        last = seen[-1]
        # "first" arrived before the command slept, not with the rest at the end.
        assert first[2] < last[2] - 0.5, seen


def test_stdin_env_cwd_and_binary_output(server):
    with Sandbox.create(socket=server.socket) as sb:
        r = sb.run(["/bin/sh", "-c", "cat; pwd; echo $X"], stdin=b"in\n", cwd="/tmp", env={"X": "y"})
        assert r.stdout == "in\n/tmp\ny\n"
        r = sb.run(["head", "-c", "256", "/dev/urandom"])
        assert len(r.stdout_bytes) == 256


def test_command_timeout(server):
    with Sandbox.create(socket=server.socket) as sb:
        t0 = time.monotonic()
        r = sb.run("sleep 30", timeout=1)
        assert r.timed_out and r.exit_code == 137
        assert time.monotonic() - t0 < 10
        # The sandbox itself is still fine.
        assert sb.run("echo ok").stdout == "ok\n"


def test_missing_command_is_an_exec_error(server):
    with Sandbox.create(socket=server.socket) as sb:
        with pytest.raises(ExecError):
            sb.run(["/no/such/program"])


def test_files_round_trip(server):
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with Sandbox.create(socket=server.socket) as sb:
        sb.files.write("/tmp/deep/dir/blob.bin", blob, mode=0o600)
        assert sb.files.read("/tmp/deep/dir/blob.bin") == blob
        # The workload sees the same bytes.
        assert sb.run("sha256sum /tmp/deep/dir/blob.bin").stdout.split()[0] == __import__("hashlib").sha256(blob).hexdigest()
        info = sb.files.stat("/tmp/deep/dir/blob.bin")
        assert info.type == "file" and info.size == len(blob) and info.mode == "0600"
        names = [f.name for f in sb.files.list("/tmp/deep/dir")]
        assert names == ["blob.bin"]
        sb.files.remove("/tmp/deep", recursive=True)
        assert sb.run("test -e /tmp/deep").exit_code == 1
        # The root is read-only to the API as to the workload.
        with pytest.raises(NucleusError) as e:
            sb.files.write("/etc/passwd", b"x")
        assert e.value.status == 403


def test_directories_as_tar(server):
    src = tempfile.mkdtemp()
    dst = tempfile.mkdtemp()
    try:
        os.makedirs(os.path.join(src, "pkg", "sub"))
        with open(os.path.join(src, "pkg", "sub", "a.txt"), "w") as f:
            f.write("alpha")
        os.symlink("sub/a.txt", os.path.join(src, "pkg", "link"))
        with Sandbox.create(socket=server.socket) as sb:
            assert sb.files.upload_dir(src, "/tmp/work") >= 3
            assert sb.run("cat /tmp/work/pkg/link").stdout == "alpha"
            sb.run("mkdir -p /tmp/out && echo made > /tmp/out/result")
            sb.files.download_dir("/tmp/out", dst)
        with open(os.path.join(dst, "result")) as f:
            assert f.read() == "made\n"
    finally:
        subprocess.run(["rm", "-rf", src, dst])


def test_symlinks_never_lead_out(server):
    with open("/etc/hostname") as f:
        host_hostname = f.read()
    with Sandbox.create(socket=server.socket) as sb:
        sb.run("ln -s /proc/1/root/etc/passwd /tmp/magic; ln -s ../../../../../../../etc/hostname /tmp/dots; ln -s /etc /tmp/etc")
        with pytest.raises(NucleusError) as e:
            sb.files.read("/tmp/magic")
        assert e.value.status in (403, 404)
        # `..` stops at the sandbox's root: this is the sandbox's hostname file, not the host's.
        inside = sb.files.read("/tmp/dots")
        cat = sb.run("cat /etc/hostname")
        assert inside.decode() == cat.stdout, (cat.exit_code, cat.stderr)
        assert inside.decode() != host_hostname or host_hostname.strip() == ""
        # A write through a final symlink is refused rather than followed.
        with pytest.raises(NucleusError):
            sb.files.write("/tmp/dots", b"x")
        # A tar entry with `..` is refused.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("../../escape")
            ti.size = 1
            t.addfile(ti, io.BytesIO(b"x"))
        r = httpx.Client(transport=httpx.HTTPTransport(uds=server.socket)).put(
            "http://n/v1/sandboxes/%s/files/archive" % sb.id, params={"path": "/tmp"}, content=buf.getvalue()
        )
        assert r.status_code == 400 and "outside" in r.json()["error"]


def test_sandbox_timeout_removes_it(server):
    sb = Sandbox.create(timeout=1, socket=server.socket)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(s["Id"] == sb.id for s in Sandbox.list(socket=server.socket)):
        time.sleep(0.1)
    assert not any(s["Id"] == sb.id for s in Sandbox.list(socket=server.socket))
    sb.kill()  # already gone: not an error
    sb.close()


def test_fifty_concurrent_sandboxes(server):
    def one(i):
        with Sandbox.create(memory="64m", socket=server.socket) as sb:
            return sb.run("echo %d" % i).stdout.strip()

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        got = list(pool.map(one, range(50)))
    assert got == [str(i) for i in range(50)]


def test_sandboxes_outlive_a_server_restart(server):
    sb = Sandbox.create(socket=server.socket)
    sb.files.write("/tmp/state", b"kept")
    server.restart()
    again = Sandbox.connect(sb.id[:12], socket=server.socket)
    assert again.id == sb.id
    assert again.files.read("/tmp/state") == b"kept"
    assert again.run("echo alive").stdout == "alive\n"
    again.kill()
    again.close()
    sb.close()


def test_bad_requests_name_the_field(server):
    with pytest.raises(NucleusError) as e:
        Sandbox.create(memory="lots", socket=server.socket)
    assert e.value.status == 400 and "memory" in str(e.value) and "lots" in str(e.value)
    with pytest.raises(NucleusError) as e:
        Sandbox.connect("no-such-sandbox", socket=server.socket)
    assert e.value.status == 404


def test_async_client(server):
    async def main():
        async with await AsyncSandbox.create(socket=server.socket) as sb:
            chunks = []
            r = await sb.run("echo a; echo b", on_stdout=chunks.append)
            await sb.files.write("/tmp/x", b"async")
            assert await sb.files.read("/tmp/x") == b"async"
            return r, chunks

    r, chunks = asyncio.run(main())
    assert r.exit_code == 0 and "".join(chunks) == "a\nb\n"


def test_socket_is_owner_only(server):
    assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
    assert httpx.Client(transport=httpx.HTTPTransport(uds=server.socket)).get("http://n/openapi.json").json()["openapi"].startswith("3.")


def test_tcp_needs_a_token():
    require_root()
    root = tempfile.mkdtemp(prefix="nucleus-sdk-tcp-")
    try:
        # Refused outright without --token-file.
        r = subprocess.run([nucleus_bin(), "--root", root, "serve", "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "token" in r.stderr
        token = os.path.join(root, "token")
        with open(token, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        import socket as s

        probe = s.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        srv = Server(root, ["--listen", "127.0.0.1:%d" % port, "--token-file", token])
        try:
            url = "http://127.0.0.1:%d/v1/health" % port
            deadline = time.monotonic() + 5
            while True:
                try:
                    r = httpx.get(url)
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert r.status_code == 401
            assert httpx.get(url, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
            ok = httpx.get(url, headers={"Authorization": "Bearer 0123456789abcdef0123456789abcdef"})
            assert ok.status_code == 200 and ok.json()["ok"] is True
        finally:
            srv.stop()
    finally:
        subprocess.run(["rm", "-rf", root])


def test_events_tell_how_a_sandbox_ended(server):
    # A main process that exits with a code of its own.
    sb = Sandbox.create(socket=server.socket, command=["/bin/sh", "-c", "sleep 1; exit 7"])
    try:
        ev = list(sb.events())
        assert ev[0]["type"] == "started" and ev[0]["pid"] > 0, ev
        assert ev[-1]["type"] == "exited", ev
        assert ev[-1]["exit_code"] == 7 and not ev[-1]["timed_out"], ev
    finally:
        sb.kill()

    # Killed by its timeout.
    sb = Sandbox.create(socket=server.socket, timeout=1)
    try:
        last = list(sb.events())[-1]
        assert last["type"] == "exited" and last["timed_out"] is True, last
    finally:
        sb.kill()

    # The kernel's OOM killer, inside a 32 MiB sandbox whose main process
    # outlives the killed one; stats on the way.
    hog = "x = b'a' * (256 << 20)"
    script = "sleep 1; python3 -c \"%s\"; echo $? > /tmp/rc; sleep 1; exit 5" % hog
    sb = Sandbox.create(socket=server.socket, memory="32m", command=["/bin/sh", "-c", script])
    try:
        ev = list(sb.events(stats=0.2))
        kinds = [e["type"] for e in ev]
        assert "oom" in kinds and "stats" in kinds, kinds
        last = ev[-1]
        assert last["type"] == "exited" and last["oom_kills"] >= 1 and last["exit_code"] == 5, last
    finally:
        sb.kill()


def test_events_of_an_unknown_sandbox(server):
    sb = Sandbox("no-such-box", server.socket)
    with pytest.raises(NucleusError) as e:
        list(sb.events())
    assert e.value.status == 404 and "no-such-box" in str(e.value)


def test_stdin_streams_from_an_iterable_or_a_file(server):
    with Sandbox.create(socket=server.socket) as sb:
        r = sb.run("cat", stdin=iter([b"one ", b"two ", b"three"]))
        assert r.exit_code == 0 and r.stdout == "one two three"
        # 8 MiB, more than any pipe or channel holds, counted and hashed inside.
        chunk = bytes(range(256)) * 4096
        r = sb.run("tee /tmp/in | wc -c", stdin=(chunk for _ in range(8)))
        assert r.stdout.strip() == str(8 * len(chunk))
        assert sb.files.read("/tmp/in") == chunk * 8
        with tempfile.TemporaryFile() as f:
            f.write(b"from a file\n")
            f.seek(0)
            assert sb.run(["cat"], stdin=f).stdout == "from a file\n"
        # An empty stream is an empty stdin, closed at once.
        assert sb.run("wc -c", stdin=iter([])).stdout.strip() == "0"

        async def agen():
            for part in (b"a", b"sync", b"io"):
                await asyncio.sleep(0.01)
                yield part

        async def drive():
            asb = AsyncSandbox(sb.id, server.socket)
            try:
                return await asb.run("cat", stdin=agen())
            finally:
                await asb.close()

        assert asyncio.run(drive()).stdout == "asyncio"


def test_stream_request_line_is_checked(server):
    with Sandbox.create(socket=server.socket) as sb:
        with httpx.Client(transport=httpx.HTTPTransport(uds=server.socket), base_url="http://n") as c:
            url = "/v1/sandboxes/%s/exec" % sb.id
            ct = {"content-type": "application/x-nucleus-exec-stream"}
            r = c.post(url, content=b'{"cmd": ["cat"], "stdin": "eA=="}\nmore', headers=ct)
            assert r.status_code == 400 and "stdin" in r.json()["error"], r.text
            r = c.post(url, content=b'{"cmd": ["cat"]', headers=ct)
            assert r.status_code == 400 and "request line" in r.json()["error"], r.text


def _zombie_children(pid: int):
    """The server's exited children nobody has waited for."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            for c in f.read().split():
                try:
                    with open("/proc/%s/stat" % c) as s:
                        if s.read().rsplit(")", 1)[1].split()[0] == "Z":
                            out.append(int(c))
                except OSError:
                    pass
    return out


def test_ended_sandboxes_leave_no_zombie_monitors(server):
    for _ in range(3):
        with Sandbox.create(socket=server.socket) as sb:
            assert sb.run("true").exit_code == 0
    deadline = time.monotonic() + 5
    while _zombie_children(server.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _zombie_children(server.proc.pid) == []


PROBE = (
    "for n in mnt pid net ipc uts cgroup user; do echo $n $(readlink /proc/self/ns/$n); done; "
    "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd|CapPrm|Uid|Gid):' /proc/self/status; "
    "cat /proc/self/cgroup; ulimit -n"
)


def _exec_servers(root: str):
    """Pids of the exec servers (`nucleus:[execd]`: forks of a sandbox's
    monitor, or `nucleus exec-server`) serving this root."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % p, "rb") as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if comm == b"nucleus:[execd]" and root.encode() in argv:
            out.append(int(p))
    return out


def test_exec_server_runs_commands_as_nucleus_exec_does(server):
    """A command run through the API (the sandbox's exec server) observes
    exactly what one run by `nucleus exec` observes: the container's
    namespaces (those of its init, read from the host), its cgroups,
    seccomp filter, no_new_privs, capabilities, user and limits."""
    require_root()
    with Sandbox.create(socket=server.socket) as sb:
        api = sb.run(PROBE)
        assert api.exit_code == 0, api.stderr
        # The server is there, in the sandbox's cgroup, with a 0600 socket.
        pids = _exec_servers(server.root)
        assert len(pids) == 1, pids
        socks = [p for p in os.listdir(os.path.join(server.root, ".api")) if p.endswith(".sock")]
        assert len(socks) == 1, socks
        mode = os.stat(os.path.join(server.root, ".api", socks[0])).st_mode
        assert stat.S_IMODE(mode) == 0o600
        cli = subprocess.run(
            [nucleus_bin(), "--root", server.root, "exec", sb.id, "/bin/sh", "-c", PROBE],
            capture_output=True, text=True, check=True,
        )
        assert api.stdout == cli.stdout
        state = subprocess.run(
            [nucleus_bin(), "--root", server.root, "state", sb.id], capture_output=True, text=True, check=True
        )
        init = __import__("json").loads(state.stdout)["pid"]
        seen = dict(line.split(" ", 1) for line in api.stdout.splitlines()[:7])
        for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user"):
            assert seen[ns] == os.readlink("/proc/%d/ns/%s" % (init, ns)), ns
        assert seen["mnt"] != os.readlink("/proc/self/ns/mnt")
        assert "Seccomp:\t2" in api.stdout and "NoNewPrivs:\t1" in api.stdout
        assert "CapEff:\t0000000000000000" in api.stdout
        with open("/proc/%d/cgroup" % init) as f:
            init_cgroups = f.read()
        with open("/proc/%d/cgroup" % pids[0]) as f:
            assert f.read() == init_cgroups
        # Exit codes, stderr and a refused command still come through.
        r = sb.run("echo e >&2; exit 7")
        assert (r.exit_code, r.stderr) == (7, "e\n")
    # Gone with the sandbox: no process, no socket.
    deadline = time.monotonic() + 5
    while _exec_servers(server.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _exec_servers(server.root) == []
    assert not [p for p in os.listdir(os.path.join(server.root, ".api")) if p.startswith("x-")]


def test_exec_server_refuses_other_verbs(server):
    """The exec server runs `exec` into its own sandbox only."""
    require_root()
    import array
    import json
    import socket as so

    with Sandbox.create(socket=server.socket) as sb, Sandbox.create(socket=server.socket) as other:
        assert sb.run("true").exit_code == 0
        path = [os.path.join(server.root, ".api", p) for p in os.listdir(os.path.join(server.root, ".api"))
                if p == "x-%s.sock" % sb.id[:16]][0]
        for argv in (["delete", "--force", other.id], ["exec", other.id, "true"], ["--root", "/", "exec", sb.id, "true"]):
            s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
            s.connect(path)
            r, w = os.pipe()
            null = os.open("/dev/null", os.O_RDWR)
            s.sendmsg([(json.dumps(argv) + "\n").encode()],
                      [(so.SOL_SOCKET, so.SCM_RIGHTS, array.array("i", [null, null, w]))])
            os.close(w)
            os.close(null)
            err = b""
            while True:
                d = os.read(r, 4096)
                if not d:
                    break
                err += d
            os.close(r)
            code = s.recv(4)
            s.close()
            assert int.from_bytes(code, "little") == 255, argv
            assert b"nucleus:" in err, (argv, err)
        assert other.run("echo alive").stdout == "alive\n"


def test_exec_server_starts_with_the_sandbox(server):
    """The API starts a sandbox's exec server when it creates the sandbox,
    before any command; an exec arriving meanwhile uses that same launch
    (one server, never a second one answering `busy`)."""
    require_root()
    with Sandbox.create(socket=server.socket) as sb:
        deadline = time.monotonic() + 10
        while not _exec_servers(server.root) and time.monotonic() < deadline:
            time.sleep(0.01)
        pids = _exec_servers(server.root)
        assert len(pids) == 1, pids
        r = sb.run("echo up")
        assert (r.exit_code, r.stdout) == (0, "up\n")
        assert _exec_servers(server.root) == pids
    with Sandbox.create(socket=server.socket) as sb:
        # At once after create: the launch may still be under way.
        r = sb.run("echo first")
        assert (r.exit_code, r.stdout) == (0, "first\n")
        assert len(_exec_servers(server.root)) == 1


def _proc(pid: int):
    """(comm, ppid, argv) of a live process, or None."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            comm = f.read().strip()
        with open("/proc/%d/stat" % pid) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    return comm, ppid, argv


def _standby_monitors(root: str):
    """Pids of the monitors waiting for a create of this root's server."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            info = _proc(int(p))
            if info and b"--standby" in info[2] and root.encode() in info[2] and info[0] == "nucleus:[mon]":
                out.append(int(p))
    return out


def _has_children(pid: int) -> bool:
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                if f.read().strip():
                    return True
        except OSError:
            pass
    return False


def _waiting(root: str, server_pid: int):
    """The standby monitors still waiting: the server's children that
    monitor nothing yet (a used one is the parent of an init)."""
    return [
        p for p in _standby_monitors(root)
        if (_proc(p) or (None, None))[1] == server_pid and not _has_children(p)
    ]


def test_a_standby_monitor_takes_the_next_create_and_none_outlives_the_server(server):
    """The server keeps one monitor started ahead of need; a create hands it
    its sandbox (that process becomes the sandbox's monitor, and the exec
    server is its fork, listening before the create returns), another one
    replaces it, and an unused standby ends with the server."""
    require_root()
    deadline = time.monotonic() + 10
    while not _waiting(server.root, server.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    standby = _waiting(server.root, server.proc.pid)
    assert len(standby) == 1, standby
    sb = Sandbox.create(socket=server.socket)
    # Before any exec: the socket is there (bound before the monitor said
    # `ok`), and a fork of the monitor (forked just after) serves it.
    assert os.path.exists(os.path.join(server.root, ".api", "x-%s.sock" % sb.id[:16]))
    deadline = time.monotonic() + 10
    while not _exec_servers(server.root) and time.monotonic() < deadline:
        time.sleep(0.01)
    servers = _exec_servers(server.root)
    assert len(servers) == 1, servers
    assert _proc(servers[0])[1] == standby[0], "the exec server is a fork of the monitor"
    state = subprocess.run(
        [nucleus_bin(), "--root", server.root, "state", sb.id], capture_output=True, text=True, check=True
    )
    init = __import__("json").loads(state.stdout)["pid"]
    assert _proc(init)[1] == standby[0], "the standby became the sandbox's monitor"
    assert sb.run("echo hi").stdout == "hi\n"
    deadline = time.monotonic() + 10
    while _waiting(server.root, server.proc.pid) in ([], standby) and time.monotonic() < deadline:
        time.sleep(0.02)
    nxt = _waiting(server.root, server.proc.pid)
    assert len(nxt) == 1 and nxt != standby, nxt
    # A restart: the used monitor and its exec server go on, the waiting one goes.
    server.restart()
    deadline = time.monotonic() + 5
    while nxt[0] in _standby_monitors(server.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert nxt[0] not in _standby_monitors(server.root), "an unused standby outlived its server"
    assert _proc(standby[0]) is not None, "the sandbox's monitor went with the server"
    assert _exec_servers(server.root) == servers
    again = Sandbox.connect(sb.id, socket=server.socket)
    assert again.run("echo still").stdout == "still\n"
    again.kill()
    again.close()
    sb.close()
    server.stop()
    deadline = time.monotonic() + 5
    while _standby_monitors(server.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _standby_monitors(server.root) == []
    server.start()


def test_a_sandbox_the_api_did_not_create_gets_an_exec_server_binary(server):
    """A container started by the CLI has no exec server of its monitor's:
    the first exec through the API starts `nucleus exec-server`, which
    joins the container's cgroups (v1 by moving itself) and serves."""
    require_root()
    cid = subprocess.run(
        [nucleus_bin(), "--root", server.root, "run", "-d", "--", "sleep", "600"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    try:
        sb = Sandbox.connect(cid, socket=server.socket)
        assert _exec_servers(server.root) == []
        assert sb.run("echo via-binary").stdout == "via-binary\n"
        pids = _exec_servers(server.root)
        assert len(pids) == 1, pids
        assert b"exec-server" in _proc(pids[0])[2]
        state = subprocess.run(
            [nucleus_bin(), "--root", server.root, "state", cid], capture_output=True, text=True, check=True
        )
        init = __import__("json").loads(state.stdout)["pid"]
        with open("/proc/%d/cgroup" % init) as f, open("/proc/%d/cgroup" % pids[0]) as g:
            assert g.read() == f.read()
        sb.close()
    finally:
        subprocess.run([nucleus_bin(), "--root", server.root, "rm", "-f", cid], capture_output=True)
