"""Fixtures shared by the whole suite: the real MiniLM (loaded once) and scripted models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pluralism.config import default_dir, load_communities
from pluralism.embedding import CachedEmbedder, default_embedder
from pluralism.models import ModelPool, ScriptedChatModel
from pluralism.types import Community, ModelSpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def embedder() -> CachedEmbedder:
    """The real bundled MiniLM: routing is tested on the model users get."""
    return default_embedder()


@pytest.fixture(scope="session")
def default_pool() -> list[Community]:
    return load_communities(default_dir("communities"))


@pytest.fixture()
def scripted() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture()
def scripted_pool(scripted: ScriptedChatModel) -> Iterator[ModelPool]:
    """A pool where the local default (communities and meta-agent) is the scripted model."""
    pool = ModelPool()
    pool.register(ModelSpec(), scripted)
    yield pool
