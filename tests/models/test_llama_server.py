"""Community adapters served by a shared llama.cpp server, the way a deployment that outgrows one
machine runs them: a real llama.cpp server (xllamacpp's, on 127.0.0.1) holding the base model
and the converted GGUF LoRAs, and community files with `backend: openai` naming the adapter each
request applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluralism import Pluralism
from pluralism.config import load_communities
from pluralism.errors import UpstreamError
from pluralism.models import OpenAIChatModel
from pluralism.models._gguf import bundled_gguf, lora_gguf
from pluralism.types import GenerationParams

from .conformance import conv

SHIPPED = Path(__file__).resolve().parents[2] / "communities" / "adapters"
KEY = "sk-llama-server-test"
QUESTION = "Should grown children live with their parents?"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama_server(smol_cache: Path) -> Iterator[str]:
    """`llama-server --lora europe.gguf --lora asia.gguf --lora-init-without-apply --api-key`."""
    import xllamacpp as xlc

    base = bundled_gguf()
    loras = [lora_gguf(SHIPPED / name, base, smol_cache) for name in ("europe", "asia")]
    p = xlc.CommonParams()
    p.model.path = str(base)
    p.n_ctx = 4096
    p.n_parallel = 4
    p.cpuparams.n_threads = 1
    p.cpuparams_batch.n_threads = 1
    p.verbosity = -1
    p.warmup = False
    p.api_keys = [KEY]
    p.lora_init_without_apply = True
    p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(path), 1.0) for path in loras]
    server: Any = xlc.Server(p)
    yield f"{server.listening_address}/v1"
    del server


def _pool(tmp_path: Path, base_url: str) -> Path:
    for cid, lora in (("plain", None), ("europe", "europe"), ("asia", "asia")):
        lines = [
            f"id: {cid}",
            "kind: test",
            f"name: {cid.title()}",
            f"description: The {cid} community.",
            "persona: You answer for your community.",
            "model:",
            "  backend: openai",
            "  name: smollm2",
            f"  base_url: {base_url}",
            "  api_key_env: LLAMA_TEST_KEY",
        ]
        if lora:
            lines.append(f"  lora: {lora}")
        (tmp_path / f"{cid}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_each_community_applies_its_adapter_per_request(
    llama_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_TEST_KEY", KEY)
    pool = load_communities(_pool(tmp_path, llama_server))
    plural = Pluralism(pool)
    p = GenerationParams(max_tokens=24)
    c = conv("You answer for your community.", QUESTION)
    drafts = {
        community.id: plural.models.get(community.model).generate([c], p)[0] for community in pool
    }
    assert len(set(drafts.values())) == 3, drafts
    options = ["Acceptable", "Not acceptable", "Depends"]
    scores = {
        community.id: plural.models.get(community.model).score("Is eating dog meat ok?", options)
        for community in pool
    }
    assert max(abs(a - b) for a, b in zip(scores["plain"], scores["europe"], strict=True)) > 0.01
    # Through the whole pipeline: steering to a community answers with its adapter.
    r = plural.respond(QUESTION, mode="steerable", steer="europe")
    assert r.steered_to == "europe" and r.text


def test_an_adapter_the_server_does_not_have_is_named_with_what_it_has(
    llama_server: str,
) -> None:
    model = OpenAIChatModel(llama_server, "smollm2", api_key=KEY, lora="oceania")
    with pytest.raises(UpstreamError, match=r"no single LoRA adapter 'oceania'.*europe.*asia"):
        model.generate([conv(None, "Hi")], GenerationParams(max_tokens=2))
