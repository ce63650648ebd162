"""The proxy in front of a real model: the bundled SmolLM2, served over real HTTP.

Slower than the rest (a forward pass per token on CPU), so answers are kept to a few tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from pluralism.embedding import CachedEmbedder
from pluralism.models import LocalChatModel
from pluralism.types import GenerationParams

from .conftest import config, start_proxy
from .proxy import ProxyServer
from .upstream import Upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol() -> LocalChatModel:
    return LocalChatModel()


@pytest.fixture(scope="module")
def smol_upstream(smol: LocalChatModel) -> Iterator[Upstream]:
    def answer(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        params = GenerationParams(
            max_tokens=min(int(body.get("max_tokens") or 16), 32),
            temperature=float(body.get("temperature") or 0.0),
            seed=body.get("seed"),
        )
        return smol.generate([messages], params)[0]

    server = Upstream(answer, blocking=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smol_proxy(
    smol_upstream: Upstream, communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> Iterator[ProxyServer]:
    cfg = config(
        communities_dir, policies_dir, upstream=smol_upstream.base_url, upstream_timeout_s=120
    )
    server = start_proxy(cfg, embedder)
    yield server
    server.stop()


@pytest.mark.parametrize("model", ["pluralism/rules", "pluralism/overton"])
def test_a_real_model_answers_through_the_proxy(smol_proxy: ProxyServer, model: str) -> None:
    with openai.OpenAI(base_url=smol_proxy.base_url, api_key="x", max_retries=0) as c:
        completion = c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Should I tip at restaurants?"}],
            max_tokens=12,
        )
    text = completion.choices[0].message.content
    assert text and not text.startswith("echo:")
    p = completion.model_extra["pluralism"]  # type: ignore[index]
    assert p["rules"] == ["tipping-local-custom"]
    # A real model dominates the time; the proxy's share is small next to it.
    assert p["timings"]["models"] > p["timings"]["overhead"]


async def test_a_real_model_streams_through_the_proxy(smol_proxy: ProxyServer) -> None:
    async with openai.AsyncOpenAI(base_url=smol_proxy.base_url, api_key="x", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="pluralism/rules",
            messages=[{"role": "user", "content": "Name a fruit."}],
            max_tokens=8,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert chunks[-1].model_extra["pluralism"]["timings"]["first_token"] > 0  # type: ignore[index]


def test_without_an_upstream_the_embedded_model_answers(
    communities_dir: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    cfg = config(communities_dir, policies_dir, upstream_model=None)
    cfg.settings.meta.max_tokens = 8
    server = start_proxy(cfg, embedder)
    try:
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
            completion = c.chat.completions.create(
                model="pluralism/steerable",
                messages=[{"role": "user", "content": "Should I tip?"}],
                extra_body={"pluralism": {"steer": "asia"}},
            )
        assert completion.choices[0].message.content
        assert completion.model_extra["pluralism"]["steered_to"] == "asia"  # type: ignore[index]
        assert server.state.upstream_label.startswith("local:")
    finally:
        server.stop()


def test_the_proxy_loads_the_default_pools_adapters_before_it_is_ready(
    policies_dir: Path, embedder: CachedEmbedder
) -> None:
    from pluralism.config import default_dir
    from pluralism.server._state import ProxyState

    state = ProxyState.from_config(config(default_dir("communities"), policies_dir))
    state.load(embedder)
    local = state.pluralism.communities[0].model
    assert state.pluralism.models.get(local).adapters >= {"europe", "united-states"}


def test_the_proxy_blends_a_communitys_answers_into_the_real_models_distribution(
    tmp_path: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    import json

    (tmp_path / "answers.jsonl").write_text(
        json.dumps(
            {
                "question": "Should people always tip waiters?",
                "options": ["yes", "no"],
                "distribution": [0.1, 0.9],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "diners.yaml").write_text(
        "id: diners\nkind: test\nname: Diners\ndescription: Restaurant guests in Japan\n"
        "persona: You speak as a restaurant guest.\nanswers: answers.jsonl\n"
        "population: {countries: {Japan: 1.0}}\n",
        encoding="utf-8",
    )
    body = {"pluralism": {"population": "Japan", "options": ["yes", "no"]}}
    messages = [{"role": "user", "content": "Should I tip in restaurants?"}]
    dists = []
    for weight in (0.6, 0.0):
        cfg = config(tmp_path, policies_dir, upstream_model=None)
        cfg.settings.answers_weight = weight
        server = start_proxy(cfg, embedder)
        try:
            with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
                reply = c.chat.completions.create(
                    model="pluralism/distributional",
                    messages=messages,  # type: ignore[arg-type]
                    extra_body=body,
                )
        finally:
            server.stop()
        extra: dict[str, Any] = reply.model_extra["pluralism"]  # type: ignore[index]
        dists.append(extra["distribution"])
        blended = [n for n in extra["notes"] if n.startswith("answers: diners blended 1")]
        assert bool(blended) == (weight > 0)
    with_answers, model_alone = dists
    # The one answered question lends its shares whole: 0.4 of the model's, 0.6 of [0.1, 0.9].
    assert with_answers["yes"] == pytest.approx(0.4 * model_alone["yes"] + 0.6 * 0.1)
    assert with_answers["no"] == pytest.approx(0.4 * model_alone["no"] + 0.6 * 0.9)


def test_a_broken_answers_file_stops_the_start_with_its_line(
    tmp_path: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    from pluralism.errors import ConfigError
    from pluralism.server._state import ProxyState

    (tmp_path / "answers.jsonl").write_text('{"question": "Q?", "options": ["a"]}\n')
    (tmp_path / "elders.yaml").write_text(
        "id: elders\nkind: test\nname: Elders\ndescription: Village elders\n"
        "persona: You speak as a village elder.\nanswers: answers.jsonl\n",
        encoding="utf-8",
    )
    state = ProxyState.from_config(config(tmp_path, policies_dir))
    with pytest.raises(ConfigError, match=r"answers\.jsonl:1: field `options`"):
        state.load(embedder)
    assert not state.ready


def test_a_damaged_adapter_stops_the_start_with_its_name(
    tmp_path: Path, policies_dir: Path, embedder: CachedEmbedder
) -> None:
    from pluralism.errors import ConfigError
    from pluralism.server._state import ProxyState

    (tmp_path / "adapters" / "elders").mkdir(parents=True)
    (tmp_path / "adapters" / "elders" / "adapter_config.json").write_text("{not json")
    (tmp_path / "elders.yaml").write_text(
        "id: elders\nkind: test\nname: Elders\ndescription: Village elders\n"
        "persona: You speak as a village elder.\nadapter: adapters/elders\n",
        encoding="utf-8",
    )
    state = ProxyState.from_config(config(tmp_path, policies_dir))
    with pytest.raises(ConfigError, match="Could not load adapter 'elders'"):
        state.load(embedder)
    assert not state.ready
