"""Operations: probes, metrics, hot reload of policies, and readiness against a real Redis."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from pluralism.embedding import CachedEmbedder, minilm_path
from tests.rules.conftest import RedisServer

from .conftest import config, start_proxy
from .proxy import ProxyServer
from .upstream import Upstream, free_port


def test_healthz_and_readyz(proxy: ProxyServer) -> None:
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["reasons"] == []
    assert body["checks"]["models"] is True
    assert body["checks"]["rules"]["rules"] == 2
    assert body["checks"]["rules"]["embedder"] == "all-MiniLM-L6-v2"
    assert body["checks"]["upstream"].startswith("http://127.0.0.1")


def test_rules_are_recalled_with_the_configured_rules_embedder(
    upstream_server: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    # Any sentence-transformers directory will do; `pluralism policies tune` writes such.
    model_dir = minilm_path()
    cfg = config(
        communities_dir, policies_dir, upstream=upstream_server.base_url, rules_embedder=model_dir
    )
    server = ProxyServer(cfg, embedder=embedder).start()
    try:
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["status"] == "ready", body
        assert body["checks"]["rules"]["embedder"].startswith(f"{model_dir.name}#")
        assert server.state.values is not None
        assert server.state.values.embedder.model_id.startswith(f"{model_dir.name}#")
    finally:
        server.stop()


def test_metrics_count_requests_errors_steps_and_first_tokens(
    proxy: ProxyServer, client: openai.OpenAI
) -> None:
    messages: list[dict[str, str]] = [{"role": "user", "content": "Should I tip?"}]
    client.chat.completions.create(model="pluralism/overton", messages=messages)  # type: ignore[arg-type]
    list(client.chat.completions.create(model="pluralism/rules", messages=messages, stream=True))  # type: ignore[arg-type]
    httpx.post(f"{proxy.base_url}/chat/completions", content=b"{")
    text = httpx.get(f"{proxy.url}/metrics").text
    assert 'pluralism_requests_total{mode="overton",status="200"}' in text
    assert 'pluralism_errors_total{code="invalid_json"}' in text
    for step in ("route", "recall", "drafts", "aggregate", "answer"):
        assert f'step="{step}"' in text
    assert "pluralism_upstream_seconds_count" in text
    assert 'pluralism_time_to_first_token_seconds_count{mode="rules"}' in text
    assert 'pluralism_overhead_seconds_count{mode="overton"}' in text


def test_every_reply_has_the_overhead_header(proxy: ProxyServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/nowhere"):
        assert float(httpx.get(f"{proxy.url}{path}").headers["x-pluralism-overhead-ms"]) >= 0


def test_openapi_document_describes_the_chat_endpoint(proxy: ProxyServer) -> None:
    doc = httpx.get(f"{proxy.url}/openapi.json").json()
    op = doc["paths"]["/v1/chat/completions"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChatCompletionRequest"
    )
    assert {"200", "400", "401", "404", "413", "502", "504"} <= set(op["responses"])
    assert "ChatMessage" in doc["components"]["schemas"]


RULE = """\
rules:
  - id: {rule_id}
    text: {text}
    examples: [should I tip at restaurants]
"""


@pytest.fixture()
def reloading(
    tmp_path: Path,
    upstream_server: Upstream,
    communities_dir: Path,
    embedder: CachedEmbedder,
) -> Iterator[tuple[ProxyServer, Path]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tips.yaml").write_text(
        RULE.format(rule_id="tip-v1", text="Tipping customs differ by country.")
    )
    server = start_proxy(
        config(communities_dir, policies, upstream=upstream_server.base_url), embedder
    )
    yield server, policies
    server.stop()


def test_editing_a_policy_file_reaches_the_next_requests(
    reloading: tuple[ProxyServer, Path], upstream_server: Upstream
) -> None:
    server, policies = reloading
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:

        def rules() -> tuple[list[str], str]:
            r = c.chat.completions.create(
                model="pluralism/rules",
                messages=[{"role": "user", "content": "Should I tip at restaurants?"}],
            )
            p = r.model_extra["pluralism"]  # type: ignore[index]
            return p["rules"], p["rules_version"]

        ids, version = rules()
        assert ids == ["tip-v1"]
        (policies / "tips.yaml").write_text(
            RULE.format(rule_id="tip-v2", text="Tipping is never required; say so kindly.")
        )
        deadline = time.monotonic() + 15
        while rules()[1] == version:
            assert time.monotonic() < deadline, "the edit never reached the proxy"
            time.sleep(0.1)
        assert rules()[0] == ["tip-v2"]
        assert "never required" in upstream_server.requests[-1]["body"]["messages"][0]["content"]
        # A broken edit is refused: the last good rules keep serving.
        (policies / "tips.yaml").write_text("rules: [oops")
        time.sleep(1.0)
        assert rules()[0] == ["tip-v2"]


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: the test stops it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.redis
def test_readyz_fails_with_a_reason_when_redis_goes_away(
    redis: RedisServer,
    upstream_server: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
) -> None:
    cfg = config(
        communities_dir, policies_dir, upstream=upstream_server.base_url, redis_url=redis.url
    )
    server = start_proxy(cfg, embedder)
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        redis.stop()
        deadline = time.monotonic() + 15
        while (r := httpx.get(f"{server.url}/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "readyz never noticed Redis going away"
            time.sleep(0.1)
        assert r.status_code == 503
        assert any("Redis" in reason for reason in r.json()["reasons"])
        # Liveness is not readiness: the process is fine, and still answers from its snapshot.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


@pytest.mark.redis
def test_a_proxy_started_before_redis_waits_says_why_and_then_serves(
    tmp_path: Path,
    upstream_server: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    redis = RedisServer(binary, tmp_path)  # its port is chosen; it is not running yet
    cfg = config(
        communities_dir, policies_dir, upstream=upstream_server.base_url, redis_url=redis.url
    )
    server = ProxyServer(cfg, embedder=embedder).start(ready=False)
    try:
        assert _wait(lambda: server.state.waiting is not None, 30)
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 503
        assert "unreachable" in r.json()["reasons"][0] and "Retrying in" in r.json()["reasons"][0]
        chat = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "pluralism/rules", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 503 and "Retry-After" in chat.headers
        redis.start()
        deadline = time.monotonic() + 30  # the backoff is capped at 10 s
        while httpx.get(f"{server.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the proxy never noticed Redis coming up"
            time.sleep(0.1)
        assert server.state.rules.status()["rules"] > 0
    finally:
        server.stop()
        redis.stop()


@pytest.mark.redis
def test_rules_in_the_policies_directory_reach_redis_and_every_replica(
    redis: RedisServer,
    upstream_server: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
) -> None:
    """Files are the source of truth: a replica naming them publishes them to an empty Redis,
    and one that reads Redis alone serves the same rules."""
    publisher = start_proxy(
        config(
            communities_dir, policies_dir, upstream=upstream_server.base_url, redis_url=redis.url
        ),
        embedder,
    )
    reader_cfg = config(
        communities_dir, policies_dir, upstream=upstream_server.base_url, redis_url=redis.url
    ).model_copy(update={"policies": None})
    reader = start_proxy(reader_cfg, embedder)
    try:
        from pluralism.rules import load_policies

        expected = len(load_policies(policies_dir).rules)
        for server in (publisher, reader):
            rules = httpx.get(f"{server.url}/readyz").json()["checks"]["rules"]
            assert rules["store"] == "redis" and rules["rules"] == expected > 0
    finally:
        reader.stop()
        publisher.stop()


def test_a_redis_password_never_reaches_a_reply_or_the_log(
    upstream_server: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "CANARY-redis-pw-7f3a9c"
    cfg = config(
        communities_dir,
        policies_dir,
        upstream=upstream_server.base_url,
        redis_url=f"redis://default:{canary}@127.0.0.1:{free_port()}/0",
    )
    caplog.set_level("DEBUG")
    server = ProxyServer(cfg, embedder=embedder).start(ready=False)
    try:
        assert _wait(lambda: server.state.waiting is not None, 30)
        ready = httpx.get(f"{server.url}/readyz")
        chat = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "pluralism/rules", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert ready.status_code == 503 and chat.status_code == 503
        assert "unreachable" in ready.text  # the reason is still given, with the host
        for text in (ready.text, chat.text, caplog.text):
            assert canary not in text
        assert "default:***@127.0.0.1" in ready.text
    finally:
        server.stop()


@pytest.mark.redis
def test_a_database_number_redis_lacks_is_named_at_start(
    redis: RedisServer,
    upstream_server: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
) -> None:
    cfg = config(
        communities_dir,
        policies_dir,
        upstream=upstream_server.base_url,
        redis_url=redis.url.rsplit("/", 1)[0] + "/999",
    )
    server = ProxyServer(cfg, embedder=embedder).start(ready=False)
    try:
        assert _wait(lambda: server.state.load_error is not None, 30)
        reason = httpx.get(f"{server.url}/readyz").json()["reasons"][0]
        assert "check the database number" in reason and "internal error" not in reason
    finally:
        server.stop()


def _overton(server: ProxyServer, timeout: float, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={
            "model": "pluralism/overton",
            "stream": stream,
            "messages": [{"role": "user", "content": "Tip?"}],
        },
        timeout=timeout,
    )


def _wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_beyond_max_model_requests_a_request_is_refused_at_once(
    upstream: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    cfg = config(
        communities_dir,
        policies_dir,
        upstream=upstream.base_url,
        max_model_requests=1,
        upstream_timeout_s=10,
    )
    server = start_proxy(cfg, embedder)
    try:
        upstream.hang_s = 2.0
        upstream.plan.append("hang")  # the first request's meta answer takes 2 s
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_overton, server, 30)
            assert _wait(lambda: server.state.model_requests == 1, 10)
            started = time.monotonic()
            busy = _overton(server, 30)
            assert time.monotonic() - started < 1.0  # refused at once, not queued
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
            assert busy.headers["retry-after"] == "5"
            assert first.result().status_code == 200
        assert _overton(server, 30).status_code == 200  # the slot is free again
    finally:
        upstream.hang_s = 5.0
        server.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_model_work(
    stream: bool,
    upstream: Upstream,
    communities_dir: Path,
    policies_dir: Path,
    embedder: CachedEmbedder,
) -> None:
    cfg = config(communities_dir, policies_dir, upstream=upstream.base_url, upstream_timeout_s=30)
    server = start_proxy(cfg, embedder)
    try:
        upstream.hang_s = 20.0
        upstream.plan.append("hang")
        with pytest.raises(httpx.ReadTimeout):
            _overton(server, 1.0, stream)  # the client gives up after 1 s of a 20 s answer
        # Its work is cancelled within moments, not when the 20 s answer would have ended.
        assert _wait(lambda: server.state.model_requests == 0, 3.0)
        assert 'status="disconnected"' in httpx.get(f"{server.url}/metrics").text
    finally:
        upstream.hang_s = 5.0
        server.stop()
