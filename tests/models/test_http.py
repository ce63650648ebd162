"""The proxy's lean HTTP/1.1 transport against a raw asyncio server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from pluralism.models._http import MAX_REPLY_BYTES, LeanTransport, lean_client, post_head


async def serve(reply: bytes, *, close_after: bool) -> tuple[asyncio.Server, int, list[int]]:
    """Answers every request with `reply`; `close_after` hangs up silently after each one, as a
    server whose keep-alive timer fired would. `seen` counts connections."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(reply)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, seen


@pytest.fixture()
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with lean_client() as c:
        yield c


_BODY = b'{"ok": true}'
JSON = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: session=abc\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient) -> None:
    server, port, seen = await serve(JSON, close_after=False)
    async with server:
        for _ in range(5):
            r = await client.post(f"http://127.0.0.1:{port}/v1/x", json={"a": 1})
            assert r.json() == {"ok": True}
    assert len(seen) == 1


async def test_a_connection_closed_while_idle_is_retried_on_a_fresh_one(
    client: httpx.AsyncClient,
) -> None:
    server, port, seen = await serve(JSON, close_after=True)
    async with server:
        for _ in range(3):
            r = await client.post(f"http://127.0.0.1:{port}/v1/x", json={})
            await asyncio.sleep(0.05)  # let the hang-up arrive
            assert r.status_code == 200
    assert len(seen) == 3


async def test_a_body_without_length_reads_until_close(client: httpx.AsyncClient) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
    server, port, _ = await serve(reply, close_after=True)
    async with server:
        r = await client.post(f"http://127.0.0.1:{port}/", content=b"x")
        assert r.text == "all of it"


async def test_chunked_bodies_stream_piece_by_piece(client: httpx.AsyncClient) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"6\r\ndata: \r\n5\r\nhello\r\n0\r\n\r\n"
    )
    server, port, _ = await serve(reply, close_after=False)
    async with server, client.stream("POST", f"http://127.0.0.1:{port}/", content=b"") as r:
        pieces = [p async for p in r.aiter_bytes()]
    assert b"".join(pieces) == b"data: hello"


async def test_upstream_cookies_are_not_kept(client: httpx.AsyncClient) -> None:
    server, port, _ = await serve(JSON, close_after=False)
    async with server:
        await client.post(f"http://127.0.0.1:{port}/", json={})
    assert not client.cookies


async def test_refused_and_garbled_are_transport_errors(client: httpx.AsyncClient) -> None:
    server, port, _ = await serve(b"NOT HTTP AT ALL\r\n\r\n", close_after=True)
    async with server:
        with pytest.raises(httpx.ReadError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"")
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{port}/", content=b"")


async def test_a_silent_server_times_out() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, lean_client(timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(f"http://127.0.0.1:{port}/", content=b"")


async def test_an_invalid_content_length_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n{}"
    server, port, _ = await serve(reply, close_after=True)
    async with server:
        with pytest.raises(httpx.RemoteProtocolError, match="invalid Content-Length"):
            await client.post(f"http://127.0.0.1:{port}/", content=b"")


async def test_a_gzip_reply_is_unpacked_and_a_gzip_bomb_is_refused() -> None:
    import gzip

    transport = LeanTransport()
    small, bomb = gzip.compress(b'{"ok": true}'), gzip.compress(b"0" * (MAX_REPLY_BYTES + 1))
    assert len(bomb) < 200_000  # a small download...
    for body, ok in ((small, True), (bomb, False)):
        reply = (
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        server, port, _ = await serve(reply, close_after=True)
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions")
        async with server:
            if ok:
                _, _, content = await transport.post(url, post_head(url, {}), b"{}", 5.0)
                assert content == b'{"ok": true}'
            else:  # ...that would unpack to more than the cap
                with pytest.raises(httpx.RemoteProtocolError, match="more than 64 MiB"):
                    await transport.post(url, post_head(url, {}), b"{}", 5.0)
    await transport.aclose()
