"""A safetensors copy of a GGUF for the transformers backend, so later loads skip dequantising.

transformers dequantises a GGUF on every `from_pretrained` (~13 s for SmolLM2-135M); the same
weights saved as safetensors load in ~0.2 s. The copy lives under pluralism's cache, keyed by
the GGUF's name, size and mtime, so a reinstalled package gets a fresh copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pluralism._cache import cache_root, clean_stale_temps, publish_dir, source_key
from pluralism.errors import ConfigError, ModelError
from pluralism.models._gguf import SMOLLM2_ID, bundled_gguf, gguf_in

__all__ = [
    "SMOLLM2_ID",
    "bundled_gguf",
    "clean_stale_temps",
    "converted_dir",
    "gguf_in",
    "is_complete",
    "load_directory",
    "load_gguf",
    "save_converted",
]

# Files whose presence means a converted directory is usable; rename makes them appear together.
_REQUIRED = ("config.json", "model.safetensors")


def converted_dir(gguf: Path, cache_dir: str | Path | None = None) -> Path:
    """Where the safetensors copy of `gguf` lives; the key changes when the file is replaced."""
    stem = gguf.name.removesuffix(".gguf")
    return cache_root(cache_dir) / "models" / f"{stem}-{source_key(gguf)}"


def is_complete(target: Path) -> bool:
    return all((target / name).is_file() for name in _REQUIRED)


def load_directory(path: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"Could not load a local chat model from {path!r} ({exc}); pass a transformers "
            f"model directory, a .gguf file, or leave it empty for the bundled SmolLM2."
        ) from exc
    return model, tok


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """The slow path: dequantise the GGUF with transformers (model and tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types; the user needs one message
        raise ModelError(
            f"Could not read the GGUF file {gguf} ({exc}); reinstall its package or pass "
            f"another model path."
        ) from exc
    return model, tok


def save_converted(model: Any, tok: Any, target: Path) -> None:
    """Write a dequantised model as a plain transformers directory, atomically."""
    # A GGUF-loaded model still claims to be quantised; saved as is, it refuses to reload.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False

    def build(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))

    publish_dir(target, build, is_complete)
