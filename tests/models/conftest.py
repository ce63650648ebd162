"""Fixtures for the model backends: one real SmolLM2 and one real HTTP upstream per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pluralism.models import LocalChatModel

from .openai_server import FakeUpstream


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache root: the session converts the GGUF once, and tests can inspect it."""
    return tmp_path_factory.mktemp("pluralism-cache")


@pytest.fixture(scope="session")
def smol(smol_cache: Path) -> LocalChatModel:
    """The real bundled SmolLM2, loaded (and converted) once for the whole session."""
    return LocalChatModel(cache_dir=smol_cache)


@pytest.fixture(scope="session")
def smol_dir(smol: LocalChatModel, smol_cache: Path) -> Path:
    """The safetensors copy the session's load wrote: an ordinary transformers directory."""
    (converted,) = (smol_cache / "models").iterdir()
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
