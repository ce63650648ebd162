"""Bad input and upstream faults: OpenAI-shaped errors with the right status, and the proxy
keeps serving after each."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pluralism.embedding import CachedEmbedder

from .conftest import config, start_proxy
from .proxy import ProxyServer
from .upstream import Upstream, free_port

GOOD = {"model": "pluralism/rules", "messages": [{"role": "user", "content": "Hello?"}]}


def post(proxy: ProxyServer, content: bytes | None = None, **kw: Any) -> httpx.Response:
    return httpx.post(f"{proxy.base_url}/chat/completions", content=content, timeout=30, **kw)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "x-pluralism-overhead-ms" in r.headers
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].endswith(".") and "Traceback" not in r.text
    if code is not None:
        assert error["code"] == code
    return dict(error)


def still_serving(proxy: ProxyServer) -> None:
    assert (
        httpx.post(f"{proxy.base_url}/chat/completions", json=GOOD, timeout=30).status_code == 200
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b'{"model": "pluralism/rules", "messages": [', 400, "invalid_json", None),
        (b"", 400, "empty_body", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b'{"model": "pluralism/rules"}', 400, "invalid_value", "messages"),
        (b'{"model": "pluralism/rules", "messages": []}', 400, "invalid_value", "messages"),
        (b'{"model": "pluralism/rules", "messages": "hi"}', 400, "invalid_value", "messages"),
        (
            b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_value",
            "model",
        ),
        (
            b'{"model": "pluralism/rules", "temperature": "hot", '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_value",
            "temperature",
        ),
        (
            b'{"model": "pluralism/rules", "max_tokens": 0, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_value",
            "max_tokens",
        ),
        (
            b'{"model": "pluralism/overton", "pluralism": {"overton_style": "essay"}, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_value",
            "pluralism.overton_style",
        ),
        (
            b'{"model": "pluralism/rules", "messages": [{"role": "wizard", "content": "hi"}]}',
            400,
            "invalid_value",
            "messages.0.role",
        ),
        (
            b'{"model": "pluralism/rules", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
            400,
            "invalid_encoding",
            None,
        ),
        (
            b'{"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
            "model",
        ),
        (
            b'{"model": "pluralism/utopia", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
            "model",
        ),
        (
            b'{"model": "pluralism", "pluralism": {"mode": "utopia"}, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "unknown_mode",
            "pluralism.mode",
        ),
        (
            b'{"model": "pluralism/overton", "pluralism": {"mode": "rules"}, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "conflicting_mode",
            "pluralism.mode",
        ),
        (
            b'{"model": "pluralism/overton", '
            b'"messages": [{"role": "user", "content": "hi"}, '
            b'{"role": "assistant", "content": "a"}]}',
            400,
            "last_message_not_user",
            "messages",
        ),
        (
            b'{"model": "pluralism/rules", "messages": [{"role": "system", "content": "s"}]}',
            400,
            "no_user_message",
            "messages",
        ),
        (
            b'{"model": "pluralism/overton", "messages": [{"role": "user", "content": '
            b'[{"type": "image_url", "image_url": {"url": "x"}}]}]}',
            400,
            "unsupported_content",
            "messages.0.content",
        ),
        (
            b'{"model": "pluralism/steerable", "messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_request",
            None,
        ),
        (
            b'{"model": "pluralism/overton", "messages": [{"role": "user", "content": "   "}]}',
            400,
            "invalid_request",
            None,
        ),
        (
            b'{"model": "pluralism/distributional", "pluralism": {"population": "Atlantis"}, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "population_not_found",
            None,
        ),
        (
            b'{"model": "pluralism/overton", "messages": [{"role": "user", "content": '
            b'[{"type": "text"}]}]}',
            400,
            "invalid_value",
            "messages.0.content",
        ),
        (
            b'{"model": "pluralism/rules", "stream": "yes", '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_value",
            "stream",
        ),
        (  # deeper than any chat request, short of the JSON encoder's own limit
            b'{"model": "pluralism/rules", "metadata": '
            + b'{"a": ' * 300
            + b"1"
            + b"}" * 300
            + b', "messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_json",
            None,
        ),
    ],
)
def test_bad_input_is_a_clear_openai_error(
    proxy: ProxyServer, body: bytes, status: int, code: str, param: str | None
) -> None:
    error = assert_error(post(proxy, body), status, code)
    assert error["param"] == param
    still_serving(proxy)


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_a_body_a_web_page_could_send_unasked_is_refused(proxy: ProxyServer, kind: str) -> None:
    """Browsers post these cross-site without a CORS preflight: a keyless proxy on localhost
    must not act on them."""
    r = post(proxy, json.dumps(GOOD).encode(), headers={"content-type": kind})
    assert_error(r, 415, "unsupported_media_type")


def test_oversized_body_is_413_before_parsing(proxy: ProxyServer) -> None:
    limit = proxy.state.config.max_body_bytes
    # Not even JSON: the size alone decides, so nothing was parsed.
    assert_error(post(proxy, b"x" * (limit + 1)), 413, "request_too_large")
    big = {**GOOD, "messages": [{"role": "user", "content": "a" * limit}]}
    assert_error(post(proxy, json=big), 413, "request_too_large")
    still_serving(proxy)


def test_oversized_chunked_body_is_413(proxy: ProxyServer) -> None:
    limit = proxy.state.config.max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    assert_error(post(proxy, chunks()), 413, "request_too_large")  # no Content-Length
    still_serving(proxy)


def test_unknown_model_through_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "pluralism/overton" in str(err.value)


def test_unknown_paths_and_methods_are_openai_shaped(proxy: ProxyServer) -> None:
    assert_error(httpx.get(f"{proxy.url}/v1/nothing"), 404, "not_found")
    assert_error(httpx.get(f"{proxy.base_url}/chat/completions"), 405, "bad_method")


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("500", 502, "upstream_error"),
        ("garbage", 502, "upstream_error"),
        ("hang", 504, "upstream_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_faults_are_502_or_504_naming_it(
    proxy: ProxyServer, upstream: Upstream, fault: str, status: int, code: str, stream: bool
) -> None:
    upstream.plan.append(fault)
    error = assert_error(post(proxy, json={**GOOD, "stream": stream}), status, code)
    assert upstream.base_url in error["message"]
    still_serving(proxy)


def test_upstream_fault_in_overton_through_the_client(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.plan.append("500")
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(
            model="pluralism/overton", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 502
    assert upstream.base_url in err.value.message


@pytest.fixture(scope="module")
def refused_proxy(
    communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> Iterator[ProxyServer]:
    cfg = config(communities_dir, policies_dir, upstream=f"http://127.0.0.1:{free_port()}/v1")
    server = start_proxy(cfg, embedder)
    yield server
    server.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_that_refuses_connections_is_502(refused_proxy: ProxyServer, stream: bool) -> None:
    error = assert_error(
        post(refused_proxy, json={**GOOD, "stream": stream}), 502, "upstream_error"
    )
    assert refused_proxy.state.config.upstream in error["message"]
    assert "could not be reached" in error["message"]
    assert httpx.get(f"{refused_proxy.url}/healthz").status_code == 200


def test_an_unexpected_bug_is_a_500_without_a_trace(
    proxy: ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at 0xdeadbeef")

    monkeypatch.setattr(proxy.state.pluralism, "arespond", broken)
    r = post(proxy, json={**GOOD, "model": "pluralism/overton"})
    error = assert_error(r, 500, "internal_error")
    assert "deadbeef" not in r.text and "RuntimeError" not in r.text
    assert error["type"] == "server_error"
    monkeypatch.undo()
    still_serving(proxy)


def test_a_body_that_never_finishes_is_a_408(
    upstream_server: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    """A client announcing 100 bytes and sending 8 holds a connection until the deadline only."""
    cfg = config(
        communities_dir, policies_dir, upstream=upstream_server.base_url, body_timeout_s=0.5
    )
    server = start_proxy(cfg, embedder)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n"
                b"content-type: application/json\r\ncontent-length: 100\r\n\r\n" + b'{"model"'
            )
            conn.settimeout(10)
            started = time.monotonic()
            reply = conn.recv(65536)
        assert reply.startswith(b"HTTP/1.1 408") and b'"code":"body_timeout"' in reply
        assert time.monotonic() - started < 3
    finally:
        server.stop()
