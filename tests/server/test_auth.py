"""API keys: optional, stored hashed, compared in constant time; the upstream's key never leaks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from pluralism.embedding import CachedEmbedder
from pluralism.server._state import key_hashes

from .conftest import config, start_proxy
from .proxy import ProxyServer
from .upstream import Upstream

UPSTREAM_KEY = "sk-upstream-very-secret"
HASHED = "sha256:" + hashlib.sha256(b"team-b-key").hexdigest()


@pytest.fixture(scope="module")
def locked(
    upstream_server: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> Iterator[ProxyServer]:
    cfg = config(
        communities_dir,
        policies_dir,
        upstream=upstream_server.base_url,
        api_keys=["team-a-key", HASHED],
        upstream_api_key=UPSTREAM_KEY,
    )
    server = start_proxy(cfg, embedder)
    yield server
    server.stop()


def ask(server: ProxyServer, key: str) -> openai.types.chat.ChatCompletion:
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as c:
        return c.chat.completions.create(
            model="pluralism/rules", messages=[{"role": "user", "content": "hi"}]
        )


def test_plain_and_hashed_keys_are_accepted(locked: ProxyServer) -> None:
    assert ask(locked, "team-a-key").choices[0].message.content
    assert ask(locked, "team-b-key").choices[0].message.content


def test_keys_are_held_only_as_hashes(locked: ProxyServer) -> None:
    held = locked.state.key_hashes
    assert held == key_hashes(["team-a-key", HASHED])
    assert all(len(h) == 32 for h in held)
    assert b"team-a-key" not in b"".join(held)
    kept = [k.get_secret_value() for k in locked.state.config.api_keys]
    assert all(k.startswith("sha256:") for k in kept) and "team-a-key" not in kept


@pytest.mark.parametrize("key", ["wrong", "team-a-keyX", "TEAM-A-KEY", HASHED])
def test_a_wrong_key_is_401(locked: ProxyServer, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        ask(locked, key)
    assert err.value.status_code == 401
    assert "Wrong API key" in err.value.message


def test_a_missing_key_is_401_everywhere_under_v1(locked: ProxyServer) -> None:
    for method, path in (("POST", "/chat/completions"), ("GET", "/models")):
        r = httpx.request(method, f"{locked.base_url}{path}", json={})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
    # Probes and metrics stay open, for load balancers and Prometheus.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{locked.url}{path}").status_code == 200


def test_the_key_is_checked_before_the_body_is_read(locked: ProxyServer) -> None:
    r = httpx.post(f"{locked.base_url}/chat/completions", content=b"x" * 5_000_000)
    assert r.status_code == 401


def test_the_upstream_key_is_sent_but_never_echoed(
    locked: ProxyServer, upstream_server: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream_server.requests.clear()
    ask(locked, "team-a-key")
    assert upstream_server.requests[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    upstream_server.plan.append("echo-key")
    with pytest.raises(openai.APIStatusError) as err:
        ask(locked, "team-a-key")
    assert err.value.status_code == 502
    assert UPSTREAM_KEY not in str(err.value.body) and UPSTREAM_KEY not in caplog.text
    assert UPSTREAM_KEY not in repr(locked.state.config)
    upstream_server.plan.clear()
