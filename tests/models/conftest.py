"""Fixtures for the model backends: one real SmolLM2 and one real HTTP upstream per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pluralism.models import LocalChatModel, TransformersChatModel

from .openai_server import FakeUpstream


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache root: the session converts the GGUF once, and tests can inspect it."""
    return tmp_path_factory.mktemp("pluralism-cache")


@pytest.fixture(scope="session")
def smol(smol_cache: Path) -> LocalChatModel:
    """The real bundled SmolLM2 on llama.cpp, loaded once for the whole session (1 thread: the
    suite runs servers and models side by side on few cores)."""
    return LocalChatModel(cache_dir=smol_cache, threads=1)


@pytest.fixture(scope="session")
def hf_smol(smol_cache: Path) -> TransformersChatModel:
    """The same GGUF on the transformers backend, loaded (and converted) once."""
    return TransformersChatModel(cache_dir=smol_cache, threads=1)


@pytest.fixture(scope="session")
def smol_dir(hf_smol: TransformersChatModel, smol_cache: Path) -> Path:
    """The safetensors copy the transformers load wrote: an ordinary transformers directory."""
    (converted,) = (p for p in (smol_cache / "models").iterdir() if p.is_dir())
    return converted


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture()
def upstream(upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()
