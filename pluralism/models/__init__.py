"""Chat model backends behind the `ChatModel` protocol, and a pool that shares loaded models.

Importing this package must stay cheap (the CLI starts through it) and torch-free: `local` runs
on llama.cpp; `transformers` imports torch only when a `TransformersChatModel` is built.
"""

from __future__ import annotations

import os
import threading

from pluralism.errors import ConfigError
from pluralism.models._protocol import ChatModel, Conversation, SyncChatModel, as_conversation
from pluralism.models.local import LocalChatModel
from pluralism.models.openai import OpenAIChatModel
from pluralism.models.scripted import ScriptedChatModel
from pluralism.models.transformers import TransformersChatModel
from pluralism.types import ModelSpec

__all__ = [
    "ChatModel",
    "Conversation",
    "LocalChatModel",
    "ModelPool",
    "OpenAIChatModel",
    "ScriptedChatModel",
    "SyncChatModel",
    "TransformersChatModel",
    "as_conversation",
]

PoolKey = tuple[str, str | None, str | None] | tuple[str, str | None, str | None, str]


class ModelPool:
    """Builds each distinct `ModelSpec` once, so communities on the same model share its weights."""

    def __init__(self, *, threads: int | None = None) -> None:
        # Threads for the embedded (llama.cpp) models it builds; None follows the free cores.
        self.threads = threads
        self._models: dict[PoolKey, ChatModel] = {}
        self._guard = threading.Lock()
        # One lock per key: a 13 s first load of one model must not block lookups of the others.
        self._building: dict[PoolKey, threading.Lock] = {}

    def get(self, spec: ModelSpec) -> ChatModel:
        key = spec.key()
        with self._guard:
            model = self._models.get(key)
            if model is not None:
                return model
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._guard:
                model = self._models.get(key)
            if model is None:
                model = _build(spec, self.threads)
                with self._guard:
                    model = self._models.setdefault(key, model)
        return model

    def register(self, spec_or_key: ModelSpec | PoolKey, model: ChatModel) -> None:
        """Use `model` for every spec with this key (tests and the proxy inject instances)."""
        key = spec_or_key.key() if isinstance(spec_or_key, ModelSpec) else spec_or_key
        with self._guard:
            self._models[key] = model

    def __contains__(self, spec: ModelSpec) -> bool:
        with self._guard:
            return spec.key() in self._models

    def models(self) -> dict[PoolKey, ChatModel]:
        with self._guard:
            return dict(self._models)


def _build(spec: ModelSpec, threads: int | None = None) -> ChatModel:
    if spec.backend == "scripted":
        return ScriptedChatModel(model_id=spec.name or "scripted")
    if spec.backend == "local":
        return LocalChatModel(spec.name, threads=threads)
    if spec.backend == "transformers":
        return TransformersChatModel(spec.name, threads=threads)
    if not spec.base_url or not spec.name:
        raise ConfigError(
            "An openai model needs both `base_url` and `name` (the model the server serves); "
            "set them in the community's `model:` section."
        )
    # Keys live in the environment, never in files; a missing variable means "no key" so that
    # local servers which need none keep working.
    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    return OpenAIChatModel(
        spec.base_url,
        spec.name,
        api_key=api_key or None,
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        lora=spec.lora,
    )
