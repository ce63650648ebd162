"""`ModelPool`: one backend per distinct spec, shared; injection for tests and the proxy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pluralism.errors import ConfigError
from pluralism.models import (
    ChatModel,
    LocalChatModel,
    ModelPool,
    OpenAIChatModel,
    ScriptedChatModel,
    TransformersChatModel,
)
from pluralism.models._gguf import bundled_gguf
from pluralism.types import ModelSpec

from .conformance import conv
from .openai_server import FakeUpstream


def test_scripted_spec_is_built_once_and_shared() -> None:
    pool = ModelPool()
    spec = ModelSpec(backend="scripted", name="judge")
    first = pool.get(spec)
    assert isinstance(first, ScriptedChatModel) and first.model_id == "judge"
    assert pool.get(ModelSpec(backend="scripted", name="judge")) is first
    assert pool.get(ModelSpec(backend="scripted")) is not first
    assert spec in pool


def test_register_injects_an_instance_by_spec_or_key() -> None:
    pool = ModelPool()
    fake = ScriptedChatModel(model_id="injected")
    pool.register(ModelSpec(), fake)  # the bundled local default
    assert pool.get(ModelSpec(backend="local")) is fake
    other = ScriptedChatModel()
    pool.register(("openai", "gpt", "http://x/v1"), other)
    assert pool.get(ModelSpec(backend="openai", name="gpt", base_url="http://x/v1")) is other


def test_concurrent_gets_build_one_model() -> None:
    pool = ModelPool()
    spec = ModelSpec(backend="scripted", name="shared")
    got: list[ChatModel] = []
    threads = [threading.Thread(target=lambda: got.append(pool.get(spec))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1


def test_openai_spec_reads_the_key_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch, upstream: FakeUpstream
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    spec = ModelSpec(
        backend="openai",
        name="served",
        base_url=upstream.base_url,
        api_key_env="TEST_UPSTREAM_KEY",
        timeout_s=7,
        max_retries=1,
    )
    model = ModelPool().get(spec)
    assert isinstance(model, OpenAIChatModel)
    assert (model.timeout_s, model.max_retries) == (7, 1)
    assert model.generate([conv(None, "hi")])[0]
    assert upstream.requests[0]["auth"] == "Bearer sk-from-env"


def test_openai_spec_without_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        ModelPool().get(ModelSpec(backend="openai", name="gpt"))


def test_local_spec_with_a_path_loads_that_gguf() -> None:
    gguf = bundled_gguf()
    model = ModelPool(threads=1).get(ModelSpec(backend="local", name=str(gguf)))
    assert isinstance(model, LocalChatModel) and model.gguf == gguf and model.threads == 1


@pytest.mark.integration
def test_transformers_spec_with_a_path_loads_that_model(smol_dir: Path) -> None:
    model = ModelPool().get(ModelSpec(backend="transformers", name=str(smol_dir)))
    assert isinstance(model, TransformersChatModel) and model.loaded_from == "directory"
