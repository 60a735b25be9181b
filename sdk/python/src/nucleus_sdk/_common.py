"""What the sync and async clients share: finding (or starting) the server,
building requests, and decoding the exec stream."""

from __future__ import annotations

import base64
import codecs
import json
import os
import shutil
import socket as _socket
import subprocess
import time
from typing import IO, Any, AsyncIterator, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from ._errors import ExecError, NucleusError
from ._types import CommandResult

Command = Union[str, Sequence[str]]
Callback = Callable[[str], Any]


def default_root() -> str:
    return os.environ.get("NUCLEUS_ROOT", "/run/nucleus")


def default_socket() -> str:
    return os.environ.get("NUCLEUS_SOCKET", os.path.join(default_root(), "api.sock"))


def _connectable(path: str) -> bool:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def ensure_server(path: Optional[str], start: bool = True, wait: float = 10.0) -> str:
    """The socket to use; with ``path=None`` the default one, and a
    ``nucleus serve`` started in the background when nothing listens there."""
    if path is not None:
        return path
    path = default_socket()
    if _connectable(path) or not start:
        return path
    binary = os.environ.get("NUCLEUS_BIN") or shutil.which("nucleus")
    if not binary:
        raise NucleusError("no server on %s and no `nucleus` binary to start one (set NUCLEUS_BIN)" % path)
    subprocess.Popen(
        [binary, "--root", default_root(), "serve", "--socket", path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _connectable(path):
            return path
        time.sleep(0.02)
    raise NucleusError("started `nucleus serve` but %s did not come up within %.0fs" % (path, wait))


def create_body(
    image: Optional[str],
    memory: Optional[Union[str, int]],
    timeout: Optional[float],
    env: Optional[Dict[str, str]],
    extra: Dict[str, Any],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if image is not None:
        body["image"] = image
    if memory is not None:
        body["memory"] = memory
    if timeout is not None:
        body["timeout"] = timeout
    if env:
        body["env"] = dict(env)
    return body


def exec_body(
    cmd: Command,
    timeout: Optional[float],
    env: Optional[Dict[str, str]],
    cwd: Optional[str],
    user: Optional[str],
    stdin: Any,
    tty: bool,
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if isinstance(cmd, str):
        body["shell"] = cmd
    else:
        body["cmd"] = list(cmd)
    if timeout is not None:
        body["timeout"] = timeout
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if user is not None:
        body["user"] = user
    if stdin is not None and not is_streamed(stdin):
        if isinstance(stdin, str):
            stdin = stdin.encode()
        body["stdin"] = base64.b64encode(stdin).decode()
    if tty:
        body["tty"] = True
    return body


# Large file reads go in pieces of this size.
READ_CHUNK = 1 << 20

STREAM_CONTENT_TYPE = "application/x-nucleus-exec-stream"

Stdin = Union[bytes, str, Iterable[bytes], IO[bytes], None]


def is_streamed(stdin: Stdin) -> bool:
    """Whether ``stdin`` is sent as it is read (an iterable or a file) rather than whole."""
    return stdin is not None and not isinstance(stdin, (bytes, bytearray, str))


def _chunks(stdin: Any) -> Iterator[bytes]:
    if hasattr(stdin, "read"):
        while True:
            chunk = stdin.read(256 * 1024)
            if not chunk:
                return
            yield chunk
    else:
        for chunk in stdin:
            if chunk:
                yield bytes(chunk)


def stream_body(body: Dict[str, Any], stdin: Any) -> Iterator[bytes]:
    """The request line, then stdin's chunks as they come."""
    yield json.dumps(body).encode() + b"\n"
    yield from _chunks(stdin)


async def astream_body(body: Dict[str, Any], stdin: Any) -> AsyncIterator[bytes]:
    """As :func:`stream_body`, also taking an async iterable."""
    yield json.dumps(body).encode() + b"\n"
    if hasattr(stdin, "__aiter__"):
        async for chunk in stdin:
            if chunk:
                yield bytes(chunk)
    else:
        for chunk in _chunks(stdin):
            yield chunk


def raise_for(status: int, text: str) -> None:
    if status < 400:
        return
    try:
        v = json.loads(text)
        raise NucleusError(v.get("error", text), status, v.get("kind"))
    except ValueError:
        raise NucleusError(text or "HTTP %d" % status, status) from None


class StreamDecoder:
    """Turns exec stream lines into callbacks and a CommandResult."""

    def __init__(self, on_stdout: Optional[Callback], on_stderr: Optional[Callback]):
        self.out: List[bytes] = []
        self.err: List[bytes] = []
        self.callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        self.decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }
        self.result: Optional[CommandResult] = None

    def feed(self, line: str) -> None:
        if not line.strip():
            return
        v = json.loads(line)
        t = v.get("type")
        if t in ("stdout", "stderr"):
            data = base64.b64decode(v["data"])
            (self.out if t == "stdout" else self.err).append(data)
            cb = self.callbacks[t]
            if cb is not None:
                text = self.decoders[t].decode(data)
                if text:
                    cb(text)
        elif t == "exit":
            self.result = CommandResult(
                exit_code=v["exit_code"],
                stdout_bytes=b"".join(self.out),
                stderr_bytes=b"".join(self.err),
                timed_out=bool(v.get("timed_out")),
            )
        elif t == "error":
            raise ExecError(v.get("message", "exec failed"), kind="exec")

    def finish(self) -> CommandResult:
        if self.result is None:
            raise ExecError("the exec stream ended without an exit status", kind="exec")
        return self.result
