"""The synchronous client: ``Sandbox`` and its ``files``."""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any, Dict, Iterator, List, Optional, Union

from . import _common, _http
from ._common import Callback, Command
from ._types import CommandResult, FileInfo


def _client(socket: str) -> _http.Client:
    # Our own small HTTP/1.1 client over the unix socket (`_http`): httpx's
    # per-request CPU was a quarter of an exec's round trip.
    return _http.Client(socket)


class Files:
    """Files inside a running sandbox; paths are absolute, as the sandbox sees them."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _url(self, suffix: str = "") -> str:
        return "/v1/sandboxes/%s/files%s" % (self._sb.id, suffix)

    def write(self, path: str, data: Union[bytes, str], mode: Optional[int] = None) -> None:
        """Writes ``data`` to ``path``, making missing parent directories."""
        if isinstance(data, str):
            data = data.encode()
        params: Dict[str, Any] = {"path": path, "parents": "true"}
        if mode is not None:
            params["mode"] = "%o" % mode
        r = self._sb._http.put(self._url(), params=params, content=data)
        _common.raise_for(r.status_code, r.text)

    def read(self, path: str) -> bytes:
        # Raw 1 MiB reads: small pieces, decoded and joined, are what made
        # large reads slow (with httpx), not the server.
        with self._sb._http.stream("GET", self._url(), params={"path": path}) as r:
            if r.status_code >= 400:
                r.read()
                _common.raise_for(r.status_code, r.text)
            return b"".join(r.iter_raw(_common.READ_CHUNK))

    def list(self, path: str = "/") -> List[FileInfo]:
        r = self._sb._http.get(self._url("/list"), params={"path": path})
        _common.raise_for(r.status_code, r.text)
        return [FileInfo.from_json(v) for v in r.json()]

    def stat(self, path: str) -> FileInfo:
        r = self._sb._http.get(self._url("/stat"), params={"path": path})
        _common.raise_for(r.status_code, r.text)
        return FileInfo.from_json(r.json())

    def remove(self, path: str, recursive: bool = False) -> None:
        r = self._sb._http.delete(self._url(), params={"path": path, "recursive": str(recursive).lower()})
        _common.raise_for(r.status_code, r.text)

    def upload_dir(self, local: str, path: str) -> int:
        """Copies local directory ``local`` into ``path``; returns the number of entries."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name in sorted(os.listdir(local)):
                t.add(os.path.join(local, name), arcname=name)
        r = self._sb._http.put(self._url("/archive"), params={"path": path, "parents": "true"}, content=buf.getvalue())
        _common.raise_for(r.status_code, r.text)
        return int(r.json()["entries"])

    def download_dir(self, path: str, local: str) -> None:
        """Copies directory ``path`` into local directory ``local``."""
        r = self._sb._http.get(self._url("/archive"), params={"path": path})
        _common.raise_for(r.status_code, r.text)
        with tarfile.open(fileobj=io.BytesIO(r.content), mode="r") as t:
            t.extractall(local, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(local)


class Sandbox:
    """A nucleus sandbox. Make one with :meth:`create`; ``with`` kills it on exit."""

    def __init__(
        self,
        sandbox_id: str,
        socket: str,
        info: Optional[Dict[str, Any]] = None,
        _http: Optional[_http.Client] = None,
    ):
        self.id = sandbox_id
        self.socket = socket
        self.info = info or {}
        # The client (and its connection) that created the sandbox goes on
        # serving it: a new client costs ~1 ms of CPU.
        self._http = _http or _client(socket)
        self.files = Files(self)

    @classmethod
    def create(
        cls,
        image: Optional[str] = None,
        memory: Optional[Union[str, int]] = "512m",
        timeout: Optional[float] = 60,
        env: Optional[Dict[str, str]] = None,
        socket: Optional[str] = None,
        **extra: Any,
    ) -> "Sandbox":
        """Creates a sandbox. ``timeout`` is its lifetime in seconds (None: no limit);
        ``extra`` takes the API's other fields (name, rootfs, cpus, pids, volumes, network, spec…)."""
        sock = _common.ensure_server(socket)
        c = _client(sock)
        try:
            r = c.post("/v1/sandboxes", json=_common.create_body(image, memory, timeout, env, extra))
            _common.raise_for(r.status_code, r.text)
            info = r.json()
        except BaseException:
            c.close()
            raise
        return cls(info["Id"], sock, info, _http=c)

    @classmethod
    def connect(cls, sandbox: str, socket: Optional[str] = None) -> "Sandbox":
        """An existing sandbox, by id, name or unique id prefix."""
        sock = _common.ensure_server(socket)
        with _client(sock) as c:
            r = c.get("/v1/sandboxes/%s" % sandbox)
            _common.raise_for(r.status_code, r.text)
            info = r.json()
        return cls(info["Id"], sock, info)

    @staticmethod
    def list(socket: Optional[str] = None) -> List[Dict[str, Any]]:
        with _client(_common.ensure_server(socket)) as c:
            r = c.get("/v1/sandboxes")
            _common.raise_for(r.status_code, r.text)
            return r.json()

    def run(
        self,
        cmd: Command,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        stdin: _common.Stdin = None,
        tty: bool = False,
        on_stdout: Optional[Callback] = None,
        on_stderr: Optional[Callback] = None,
    ) -> CommandResult:
        """Runs ``cmd`` (a string goes to ``/bin/sh -c``); callbacks get output as it comes.
        ``stdin`` is bytes, or an iterable of bytes or a binary file, streamed as it is read."""
        body = _common.exec_body(cmd, timeout, env, cwd, user, stdin, tty)
        dec = _common.StreamDecoder(on_stdout, on_stderr)
        url = "/v1/sandboxes/%s/exec" % self.id
        if _common.is_streamed(stdin):
            req = self._http.stream(
                "POST", url,
                content=_common.stream_body(body, stdin),
                headers={"content-type": _common.STREAM_CONTENT_TYPE},
            )
        else:
            req = self._http.stream("POST", url, json=body)
        with req as r:
            if r.status_code >= 400:
                r.read()
                _common.raise_for(r.status_code, r.text)
            for line in r.iter_lines():
                dec.feed(line)
        return dec.finish()

    def events(self, stats: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """The sandbox's events as they happen, ending with ``exited``
        (``exit_code``, ``timed_out``, ``oom_kills``); also ``started``,
        ``oom``, and ``stats`` every ``stats`` seconds when given."""
        params = {"stats": stats} if stats is not None else {}
        with _client(self.socket) as c, c.stream("GET", "/v1/sandboxes/%s/events" % self.id, params=params) as r:
            if r.status_code >= 400:
                r.read()
                _common.raise_for(r.status_code, r.text)
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def status(self) -> Dict[str, Any]:
        r = self._http.get("/v1/sandboxes/%s" % self.id)
        _common.raise_for(r.status_code, r.text)
        return r.json()

    def stats(self) -> Dict[str, Any]:
        r = self._http.get("/v1/sandboxes/%s/stats" % self.id)
        _common.raise_for(r.status_code, r.text)
        return r.json()

    def logs(self) -> List[Dict[str, Any]]:
        r = self._http.get("/v1/sandboxes/%s/logs" % self.id)
        _common.raise_for(r.status_code, r.text)
        return r.json()

    def kill(self) -> None:
        """Kills and removes the sandbox (nothing of it is left)."""
        r = self._http.delete("/v1/sandboxes/%s" % self.id)
        if r.status_code != 404:
            _common.raise_for(r.status_code, r.text)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.kill()
        finally:
            self.close()
