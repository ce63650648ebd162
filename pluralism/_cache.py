"""Pluralism's on-disk cache: where converted models live, and how they appear atomically.

Converted files (a GGUF LoRA from a peft adapter, a GGUF of a sentence-transformers model, a
safetensors copy of a GGUF for the transformers backend) are keyed by what they were made from,
so a replaced source gets a fresh copy, and are written under a temporary name and renamed into
place, so two processes converting at once never expose a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "PLURALISM_CACHE_DIR"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The argument, else $PLURALISM_CACHE_DIR, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("pluralism"))


def source_key(*paths: Path) -> str:
    """A short key for the files a conversion reads: names, sizes and modification times.

    Cheap (no hashing of contents) and changes when a package is reinstalled or a file edited.
    """
    h = hashlib.sha256()
    for path in paths:
        st = path.stat()
        h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def publish_file(target: Path, build: Callable[[Path], None]) -> Path:
    """Write a file through `build(tmp)` and rename it to `target`; the last writer wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def publish_dir(
    target: Path, build: Callable[[Path], None], complete: Callable[[Path], bool]
) -> None:
    """Build a directory in a private temp dir, then rename it into place.

    Two processes converting at once both build, one rename wins and the loser's copy is thrown
    away, so a reader never sees a half-written directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        build(tmp)
        if target.exists() and not complete(target):
            # A broken copy (e.g. a file deleted by hand) would otherwise block the rename forever.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale_temps(directory: Path, older_than_s: float = 3600.0) -> None:
    """Remove temp files and dirs left by a conversion that crashed (e.g. killed mid-write)."""
    if not directory.is_dir():
        return
    now = time.time()
    for p in directory.glob(".*.tmp-*"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        except OSError:
            continue
