"""Fixtures for the proxy: scripted community files, a real upstream and a real proxy server.

The communities are on the scripted backend because these tests are about the proxy, and
speed is the point; the routing embedder is the real MiniLM, shared with the whole session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from pluralism.embedding import CachedEmbedder
from pluralism.server import ProxyConfig

from .proxy import ProxyServer
from .upstream import Upstream

COMMUNITIES = {
    "europe": ("European culture", "You speak from the cultural standpoint of Europe."),
    "asia": ("Asian culture: Japan, China, India", "You speak from the standpoint of Asia."),
    "conservative": ("Conservative politics", "You speak as a political conservative."),
}
RULES = """\
rules:
  - id: tipping-local-custom
    text: When asked about tipping, explain that customs differ by country.
    examples: [should I tip at restaurants]
  - id: tipping-business-travel
    text: For business travel, say whether tips can be claimed as expenses.
    scope: {tags: [business]}
    examples: [should I tip at restaurants]
"""


def write_communities(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for cid, (description, persona) in COMMUNITIES.items():
        data = {
            "id": cid,
            "kind": "test",
            "name": cid.title(),
            "description": description,
            "persona": persona,
            "model": {"backend": "scripted"},
            "population": {"countries": {"Japan": 1.0} if cid == "asia" else {"France": 1.0}},
        }
        (directory / f"{cid}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def communities_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_communities(tmp_path_factory.mktemp("communities"))


@pytest.fixture(scope="session")
def policies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("policies")
    (directory / "tipping.yaml").write_text(RULES, encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture()
def upstream(upstream_server: Upstream) -> Iterator[Upstream]:
    upstream_server.plan.clear()
    upstream_server.requests.clear()
    yield upstream_server
    upstream_server.plan.clear()


def config(communities: Path, policies: Path, **fields: Any) -> ProxyConfig:
    base: dict[str, Any] = {
        "upstream_model": "chatbot",
        "communities": communities,
        "policies": policies,
        "upstream_max_retries": 0,
        "upstream_timeout_s": 1.5,
    }
    return ProxyConfig(**{**base, **fields})


def start_proxy(cfg: ProxyConfig, embedder: CachedEmbedder) -> ProxyServer:
    return ProxyServer(cfg, embedder=embedder).start()


@pytest.fixture(scope="session")
def proxy(
    upstream_server: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> Iterator[ProxyServer]:
    server = start_proxy(
        config(communities_dir, policies_dir, upstream=upstream_server.base_url), embedder
    )
    yield server
    server.stop()


@pytest.fixture()
def client(proxy: ProxyServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture()
async def aclient(proxy: ProxyServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0) as c:
        yield c
