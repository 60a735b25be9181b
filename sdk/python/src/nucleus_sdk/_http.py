"""A small HTTP/1.1 client for the server's unix socket, used by the sync
client: one ``sendall`` per request, kept-alive connections, and a response
parser that reads only what nucleus serve sends (a status line, headers, and
a ``Content-Length`` or chunked body). httpx costs about 0.3-0.5 ms of CPU per
request on the exec path; this costs a tenth of that."""

from __future__ import annotations

import json as _json
import socket as _socket
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import urlencode

Body = Union[bytes, Iterable[bytes], None]

# Unix socket reads: the exec stream's lines are small, file reads are not.
_RECV = 1 << 20


class _Conn:
    """One connection: a socket and what was read past the last response."""

    def __init__(self, path: str, connect_timeout: float):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.settimeout(connect_timeout)
            s.connect(path)
            s.settimeout(None)
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.buf = bytearray()
        self.used = False

    def fill(self) -> bool:
        d = self.sock.recv(_RECV)
        if not d:
            return False
        self.buf += d
        return True

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if not self.fill():
                raise ConnectionError("the server closed the connection mid-response")

    def read_some(self, limit: int) -> bytes:
        if not self.buf and not self.fill():
            raise ConnectionError("the server closed the connection mid-body")
        n = min(limit, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    """A response whose body is read on demand (``iter_lines``, ``iter_raw``,
    ``read``); ``text``, ``content`` and ``json()`` once it is read."""

    def __init__(self, client: "Client", conn: _Conn, status: int, headers: Dict[str, str], head: bool):
        self._client = client
        self._conn: Optional[_Conn] = conn
        self.status_code = status
        self.headers = headers
        self._content: Optional[bytes] = None
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self._left = 0 if head else int(headers.get("content-length", "0") or 0)
        self._chunk_left = 0
        self._done = head or (not self._chunked and self._left == 0)
        self._reusable = headers.get("connection", "").lower() != "close"
        if self._done:
            self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._reusable:
                self._client._put(conn)
            else:
                conn.close()

    def _pieces(self, size: int) -> Iterator[bytes]:
        conn = self._conn
        while not self._done and conn is not None:
            if not self._chunked:
                piece = conn.read_some(min(size, self._left))
                self._left -= len(piece)
                if self._left == 0:
                    self._done = True
                    self._release()
                yield piece
                continue
            if self._chunk_left == 0:
                line = conn.readline()
                n = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if n == 0:
                    # Trailers (none from nucleus), then the empty line.
                    while conn.readline() not in (b"\r\n", b"\n"):
                        pass
                    self._done = True
                    self._release()
                    return
                self._chunk_left = n
            piece = conn.read_some(min(size, self._chunk_left))
            self._chunk_left -= len(piece)
            if self._chunk_left == 0:
                while len(conn.buf) < 2:
                    if not conn.fill():
                        raise ConnectionError("the server closed the connection mid-chunk")
                del conn.buf[:2]
            yield piece

    def iter_raw(self, size: int = _RECV) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        yield from self._pieces(size)

    def iter_lines(self) -> Iterator[str]:
        rest = b""
        for piece in self.iter_raw():
            rest += piece
            while True:
                i = rest.find(b"\n")
                if i < 0:
                    break
                yield rest[:i].decode("utf-8", "replace")
                rest = rest[i + 1 :]
        if rest:
            yield rest.decode("utf-8", "replace")

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self._pieces(_RECV))
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.read())

    def close(self) -> None:
        """Drops the connection if the body was not read to its end."""
        if not self._done:
            conn, self._conn = self._conn, None
            self._done = True
            if conn is not None:
                conn.close()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _read_head(conn: _Conn) -> Tuple[int, Dict[str, str]]:
    line = conn.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError("not an HTTP response: %r" % line[:80])
    status = int(parts[1])
    headers: Dict[str, str] = {}
    while True:
        h = conn.readline()
        if h in (b"\r\n", b"\n"):
            return status, headers
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()


class Client:
    """Requests to one unix socket, over a small pool of kept-alive
    connections (thread-safe: each request takes a connection of its own)."""

    def __init__(self, path: str, connect_timeout: float = 10.0):
        self.path = path
        self.connect_timeout = connect_timeout
        self._idle: List[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def _get(self) -> _Conn:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Conn(self.path, self.connect_timeout)

    def _put(self, conn: _Conn) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < 8 and not conn.buf:
                conn.used = True
                self._idle.append(conn)
                return
        conn.close()

    def _send(
        self,
        method: str,
        url: str,
        params: Optional[Dict[str, Any]],
        json: Any,
        content: Body,
        headers: Optional[Dict[str, str]],
    ) -> Response:
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        hdrs = {"host": "nucleus"}
        body: Optional[bytes] = None
        chunks: Optional[Iterable[bytes]] = None
        if json is not None:
            body = _json.dumps(json).encode()
            hdrs["content-type"] = "application/json"
        elif isinstance(content, (bytes, bytearray, memoryview)):
            body = bytes(content)
        elif content is not None:
            chunks = content
        if headers:
            hdrs.update({k.lower(): v for k, v in headers.items()})
        if chunks is not None:
            hdrs["transfer-encoding"] = "chunked"
        elif body is not None or method in ("POST", "PUT"):
            hdrs["content-length"] = str(len(body or b""))
        head = ("%s %s HTTP/1.1\r\n" % (method, url) + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n").encode("latin-1")
        for attempt in (0, 1):
            conn = self._get()
            reused = conn.used
            try:
                if chunks is None:
                    # Small bodies go with the head in one write.
                    if body is not None and len(body) <= 64 * 1024:
                        conn.sock.sendall(head + body)
                    else:
                        conn.sock.sendall(head)
                        if body:
                            conn.sock.sendall(body)
                else:
                    conn.sock.sendall(head)
                    for c in chunks:
                        if c:
                            conn.sock.sendall(b"%x\r\n" % len(c) + bytes(c) + b"\r\n")
                    conn.sock.sendall(b"0\r\n\r\n")
                status, rh = _read_head(conn)
            except (ConnectionError, BrokenPipeError, OSError):
                conn.close()
                # A kept-alive connection the server had closed: once more
                # on a new one, unless the body was a stream (it is spent).
                if reused and attempt == 0 and chunks is None:
                    continue
                raise
            return Response(self, conn, status, rh, method == "HEAD")
        raise ConnectionError("unreachable")

    def request(self, method: str, url: str, params: Optional[Dict[str, Any]] = None, json: Any = None,
                content: Body = None, headers: Optional[Dict[str, str]] = None) -> Response:
        """A whole response (its body read)."""
        r = self._send(method, url, params, json, content, headers)
        r.read()
        return r

    def stream(self, method: str, url: str, params: Optional[Dict[str, Any]] = None, json: Any = None,
               content: Body = None, headers: Optional[Dict[str, str]] = None) -> Response:
        """A response whose body is read as it comes (use it with ``with``)."""
        return self._send(method, url, params, json, content, headers)

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> Response:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> Response:
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
