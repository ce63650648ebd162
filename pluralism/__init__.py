"""pluralism: pluralistic alignment middleware.

The public API lives here; everything else is a private module. Heavy parts (torch, LangGraph,
the server) load on first use so that `import pluralism` and the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pluralism._lazy import lazy_attributes
from pluralism.errors import (
    ConfigError,
    InputError,
    ModelError,
    ModelPackageMissingError,
    PluralismError,
    PopulationNotFoundError,
    RuleStoreError,
    SteerNotFoundError,
    UnknownModeError,
    UpstreamError,
)
from pluralism.types import (
    Community,
    GenerationParams,
    Membership,
    Message,
    Mode,
    ModelSpec,
    Perspective,
    PluralRequest,
    PluralResponse,
    Principle,
    Rule,
    RuleHit,
    RuleScope,
    Trace,
)

if TYPE_CHECKING:
    from pluralism.answers import Answered, AnswerMemory
    from pluralism.config import load_communities
    from pluralism.core import Pluralism
    from pluralism.embedding import (
        CachedEmbedder,
        Embedder,
        EnsembleEmbedder,
        LlamaEmbedder,
        SentenceTransformerEmbedder,
        load_embedder,
    )
    from pluralism.models import (
        ChatModel,
        LocalChatModel,
        ModelPool,
        OpenAIChatModel,
        ScriptedChatModel,
        TransformersChatModel,
    )
    from pluralism.router import Router, RouterSettings
    from pluralism.rules import (
        InMemoryRuleStore,
        RedisRuleStore,
        RuleMemory,
        RuleStore,
        TuneReport,
        tune_embedder,
    )
    from pluralism.settings import Settings

__version__ = "0.1.0"

_LAZY = {
    "Pluralism": "pluralism.core",
    "Settings": "pluralism.settings",
    "load_communities": "pluralism.config",
    "AnswerMemory": "pluralism.answers",
    "Answered": "pluralism.answers",
    "Embedder": "pluralism.embedding",
    "SentenceTransformerEmbedder": "pluralism.embedding",
    "CachedEmbedder": "pluralism.embedding",
    "EnsembleEmbedder": "pluralism.embedding",
    "LlamaEmbedder": "pluralism.embedding",
    "load_embedder": "pluralism.embedding",
    "ChatModel": "pluralism.models",
    "LocalChatModel": "pluralism.models",
    "OpenAIChatModel": "pluralism.models",
    "ScriptedChatModel": "pluralism.models",
    "TransformersChatModel": "pluralism.models",
    "ModelPool": "pluralism.models",
    "Router": "pluralism.router",
    "RouterSettings": "pluralism.router",
    "RuleMemory": "pluralism.rules",
    "RuleStore": "pluralism.rules",
    "InMemoryRuleStore": "pluralism.rules",
    "RedisRuleStore": "pluralism.rules",
    "TuneReport": "pluralism.rules",
    "tune_embedder": "pluralism.rules",
}


__getattr__ = lazy_attributes("pluralism", _LAZY, globals())


__all__ = [
    "AnswerMemory",
    "Answered",
    "CachedEmbedder",
    "ChatModel",
    "Community",
    "ConfigError",
    "Embedder",
    "EnsembleEmbedder",
    "GenerationParams",
    "InMemoryRuleStore",
    "InputError",
    "LlamaEmbedder",
    "LocalChatModel",
    "Membership",
    "Message",
    "Mode",
    "ModelError",
    "ModelPackageMissingError",
    "ModelPool",
    "ModelSpec",
    "OpenAIChatModel",
    "Perspective",
    "PluralRequest",
    "PluralResponse",
    "Pluralism",
    "PluralismError",
    "PopulationNotFoundError",
    "Principle",
    "RedisRuleStore",
    "Router",
    "RouterSettings",
    "Rule",
    "RuleHit",
    "RuleMemory",
    "RuleScope",
    "RuleStore",
    "RuleStoreError",
    "ScriptedChatModel",
    "SentenceTransformerEmbedder",
    "Settings",
    "SteerNotFoundError",
    "Trace",
    "TransformersChatModel",
    "TuneReport",
    "UnknownModeError",
    "UpstreamError",
    "__version__",
    "load_communities",
    "load_embedder",
    "tune_embedder",
]
