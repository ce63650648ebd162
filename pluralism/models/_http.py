"""A lean HTTP/1.1 keep-alive transport for the proxy's calls to its upstream.

httpx's default transport costs ~0.7 ms of CPU per request and degrades badly with many
requests in flight (measured: under 500 requests/s at concurrency 32 against an upstream that
serves 6,000). The proxy makes exactly one kind of call (a POST to one upstream, JSON or SSE
back), so this transport does just that over asyncio streams, and plugs into `httpx` so the
upstream model keeps its retries, timeouts and error mapping unchanged. Anything unusual
(HTTP/2, proxies, upgrades) is out of scope: the default transport remains for those.

`LeanTransport.post` skips httpx altogether for the hottest call, a JSON POST read whole:
httpx's request and response objects cost as much CPU as the rest of a pass-through request.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

_MAX_HEAD = 64 * 1024
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_idle: int = 128, verify: ssl.SSLContext | bool = True) -> None:
        self._idle: dict[tuple[str, str, int], list[Conn]] = {}
        self._max_idle = max_idle
        self._ssl = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else (ssl.create_default_context() if verify else _no_verify())
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _head(request, len(body))
        status, headers, stream = await self._exchange(
            key, head + body, timeouts.get("connect"), timeouts.get("read"), request
        )
        return httpx.Response(status, headers=headers, stream=stream, request=request)

    async def post(
        self, url: httpx.URL, head: bytes, body: bytes, timeout: float | None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """POST `body` after `head` (from `post_head`) and read the whole reply: status, headers
        (lower-case names) and body. Failures raise httpx's exceptions, as a transport would."""
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        status, headers, stream = await self._exchange(
            key, head + b"%d\r\n\r\n" % len(body) + body, timeout, timeout, None
        )
        try:
            content = b"".join([piece async for piece in stream])
        finally:
            await stream.aclose()
        found = dict(headers)
        if found.get(b"content-encoding", b"identity").lower() in (b"gzip", b"x-gzip"):
            # Not asked for, but some servers send it anyway; capped, as a few KB of gzip can
            # unpack to gigabytes.
            content = _gunzip(content, MAX_REPLY_BYTES)
        return status, found, content

    async def _exchange(
        self,
        key: tuple[str, str, int],
        data: bytes,
        connect_timeout: float | None,
        read_timeout: float | None,
        request: httpx.Request | None,
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body]:
        # A pooled connection may have been closed by the server while idle: one retry on a
        # fresh connection, and only when nothing was read back (so nothing is sent twice
        # that the server could have acted on).
        for attempt in (0, 1):
            reused, (reader, writer) = await self._connect(key, connect_timeout)
            try:
                writer.write(data)
                status, headers = await _read_head(reader, read_timeout)
            except _Stale:
                writer.close()
                if reused and attempt == 0:
                    continue
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                ) from None
            except TimeoutError:
                writer.close()
                raise httpx.ReadTimeout(
                    "Timed out waiting for the response.", request=request
                ) from None
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                writer.close()
                raise httpx.ReadError(
                    f"Reading the response failed: {exc}", request=request
                ) from None
            length = dict(headers).get(b"content-length")
            if length is not None and not length.strip().isdigit():
                writer.close()
                raise httpx.RemoteProtocolError(
                    f"The server sent an invalid Content-Length ({length[:40]!r}).",
                    request=request,
                )
            stream = _Body(self, key, reader, writer, headers, read_timeout, request)
            return status, headers, stream
        raise AssertionError("unreachable")

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> tuple[bool, Conn]:
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return True, (reader, writer)
            writer.close()
        scheme, host, port = key
        try:
            async with asyncio.timeout(timeout):
                conn = await asyncio.open_connection(
                    host, port, ssl=self._ssl if scheme == "https" else None, limit=_MAX_HEAD * 4
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from None
        except OSError as exc:
            raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}") from None
        return False, conn

    def release(self, key: tuple[str, str, int], conn: Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn[1].close()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()


class _Stale(Exception):
    """The connection closed before any byte of a response arrived."""


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def post_head(url: httpx.URL, headers: dict[str, str]) -> bytes:
    """The request head of `LeanTransport.post` up to the value of its content-length, built
    once per upstream rather than per request."""
    lines = [f"POST {url.raw_path.decode('ascii')} HTTP/1.1", f"host: {url.netloc.decode('ascii')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["accept: application/json", "content-type: application/json", "content-length: "]
    return "\r\n".join(lines).encode("latin-1")


def _head(request: httpx.Request, length: int) -> bytes:
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    for name, value in request.headers.multi_items():
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(
    reader: asyncio.StreamReader, timeout: float | None
) -> tuple[int, list[tuple[bytes, bytes]]]:
    async with asyncio.timeout(timeout):
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale from None
            raise
        except asyncio.LimitOverrunError:
            raise ValueError("response headers are too large") from None
    status_line, *rest = raw[:-4].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers = []
    for line in rest:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return int(parts[1]), headers


class _Body(httpx.AsyncByteStream):
    """The response body, by Content-Length, chunked encoding or until close; the connection
    goes back to the pool only when the body was read to its end."""

    def __init__(
        self,
        transport: LeanTransport,
        key: tuple[str, str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: list[tuple[bytes, bytes]],
        timeout: float | None,
        request: httpx.Request | None,
    ) -> None:
        self._t, self._key, self._r, self._w = transport, key, reader, writer
        h = dict(headers)
        self._length = int(h[b"content-length"]) if b"content-length" in h else None
        self._chunked = b"chunked" in h.get(b"transfer-encoding", b"").lower()
        self._keep = h.get(b"connection", b"").lower() != b"close"
        self._timeout = timeout
        self._request = request
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._pieces():
                yield piece
        except TimeoutError:
            raise httpx.ReadTimeout(
                "Timed out reading the response.", request=self._request
            ) from None
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise httpx.ReadError(
                f"Reading the response failed: {exc}", request=self._request
            ) from None

    async def _pieces(self) -> AsyncIterator[bytes]:
        r = self._r
        if self._chunked:
            while True:
                async with asyncio.timeout(self._timeout):
                    size_line = await r.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    async with asyncio.timeout(self._timeout):
                        while await r.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers
                    break
                async with asyncio.timeout(self._timeout):
                    data = await r.readexactly(size + 2)
                yield data[:-2]
        elif self._length is not None:
            if self._length:
                async with asyncio.timeout(self._timeout):
                    yield await r.readexactly(self._length)
        else:
            self._keep = False
            while True:
                async with asyncio.timeout(self._timeout):
                    data = await r.read(65536)
                if not data:
                    break
                yield data
        self._done = True

    async def aclose(self) -> None:
        conn = (self._r, self._w)
        self._r = None  # type: ignore[assignment]
        if conn[0] is None:
            return
        if self._done and self._keep and not self._w.is_closing():
            self._t.release(self._key, conn)
        else:
            self._w.close()


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: one client serves every user of the proxy, so a cookie the
    upstream sets for one request must not ride along on another user's (and parsing
    Set-Cookie on every reply cost ~7% of the proxy's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def lean_client(transport: LeanTransport | None = None, **kwargs: Any) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=transport or LeanTransport(), **kwargs)
    # The public setter copies into a plain `Cookies`, which would bring extraction back.
    client._cookies = _NoCookies()
    return client


# The largest reply body the proxy unpacks: far beyond any chat completion.
MAX_REPLY_BYTES = 64 * 1024 * 1024


def _gunzip(data: bytes, limit: int) -> bytes:
    unpack = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = unpack.decompress(data, limit)
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(f"The server's gzip reply is damaged: {exc}") from None
    if unpack.unconsumed_tail:
        raise httpx.RemoteProtocolError(
            f"The server's gzip reply unpacks to more than {limit // 2**20} MiB; refused."
        )
    return out
