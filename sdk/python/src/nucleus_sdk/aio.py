"""The asynchronous client: ``AsyncSandbox`` and its ``files``, mirroring the sync one."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import httpx

from . import _common
from ._common import Callback, Command
from ._types import CommandResult, FileInfo


def _client(socket: str) -> httpx.AsyncClient:
    # A unix socket: no TLS context to build, no proxy from the environment.
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=socket, verify=False),
        base_url="http://nucleus",
        trust_env=False,
        timeout=httpx.Timeout(None, connect=10.0),
    )


class AsyncFiles:
    def __init__(self, sandbox: "AsyncSandbox"):
        self._sb = sandbox

    def _url(self, suffix: str = "") -> str:
        return "/v1/sandboxes/%s/files%s" % (self._sb.id, suffix)

    async def write(self, path: str, data: Union[bytes, str], mode: Optional[int] = None) -> None:
        if isinstance(data, str):
            data = data.encode()
        params: Dict[str, Any] = {"path": path, "parents": "true"}
        if mode is not None:
            params["mode"] = "%o" % mode
        r = await self._sb._http.put(self._url(), params=params, content=data)
        _common.raise_for(r.status_code, r.text)

    async def read(self, path: str) -> bytes:
        async with self._sb._http.stream("GET", self._url(), params={"path": path}) as r:
            if r.status_code >= 400:
                await r.aread()
                _common.raise_for(r.status_code, r.text)
            return b"".join([c async for c in r.aiter_raw(_common.READ_CHUNK)])

    async def list(self, path: str = "/") -> List[FileInfo]:
        r = await self._sb._http.get(self._url("/list"), params={"path": path})
        _common.raise_for(r.status_code, r.text)
        return [FileInfo.from_json(v) for v in r.json()]

    async def remove(self, path: str, recursive: bool = False) -> None:
        r = await self._sb._http.delete(self._url(), params={"path": path, "recursive": str(recursive).lower()})
        _common.raise_for(r.status_code, r.text)


class AsyncSandbox:
    """``async with await AsyncSandbox.create(...) as sb:`` kills it on exit."""

    def __init__(
        self,
        sandbox_id: str,
        socket: str,
        info: Optional[Dict[str, Any]] = None,
        _http: Optional[httpx.AsyncClient] = None,
    ):
        self.id = sandbox_id
        self.socket = socket
        self.info = info or {}
        # The client that created the sandbox goes on serving it.
        self._http = _http or _client(socket)
        self.files = AsyncFiles(self)

    @classmethod
    async def create(
        cls,
        image: Optional[str] = None,
        memory: Optional[Union[str, int]] = "512m",
        timeout: Optional[float] = 60,
        env: Optional[Dict[str, str]] = None,
        socket: Optional[str] = None,
        **extra: Any,
    ) -> "AsyncSandbox":
        sock = _common.ensure_server(socket)
        c = _client(sock)
        try:
            r = await c.post("/v1/sandboxes", json=_common.create_body(image, memory, timeout, env, extra))
            _common.raise_for(r.status_code, r.text)
            info = r.json()
        except BaseException:
            await c.aclose()
            raise
        return cls(info["Id"], sock, info, _http=c)

    async def run(
        self,
        cmd: Command,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        stdin: Any = None,
        tty: bool = False,
        on_stdout: Optional[Callback] = None,
        on_stderr: Optional[Callback] = None,
    ) -> CommandResult:
        body = _common.exec_body(cmd, timeout, env, cwd, user, stdin, tty)
        dec = _common.StreamDecoder(on_stdout, on_stderr)
        url = "/v1/sandboxes/%s/exec" % self.id
        if _common.is_streamed(stdin):
            req = self._http.stream(
                "POST", url,
                content=_common.astream_body(body, stdin),
                headers={"content-type": _common.STREAM_CONTENT_TYPE},
            )
        else:
            req = self._http.stream("POST", url, json=body)
        async with req as r:
            if r.status_code >= 400:
                await r.aread()
                _common.raise_for(r.status_code, r.text)
            async for line in r.aiter_lines():
                dec.feed(line)
        return dec.finish()

    async def events(self, stats: Optional[float] = None) -> AsyncIterator[Dict[str, Any]]:
        """As :meth:`Sandbox.events`, for asyncio."""
        params = {"stats": stats} if stats is not None else {}
        async with self._http.stream("GET", "/v1/sandboxes/%s/events" % self.id, params=params) as r:
            if r.status_code >= 400:
                await r.aread()
                _common.raise_for(r.status_code, r.text)
            async for line in r.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def kill(self) -> None:
        r = await self._http.delete("/v1/sandboxes/%s" % self.id)
        if r.status_code != 404:
            _common.raise_for(r.status_code, r.text)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.kill()
        finally:
            await self.close()
