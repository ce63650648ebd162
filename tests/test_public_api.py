"""The public API is pinned: removing or renaming a name here is a breaking change."""

from __future__ import annotations

import subprocess
import sys

import pluralism

PINNED = {
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
}


def test_all_is_pinned() -> None:
    assert set(pluralism.__all__) == PINNED


def test_every_public_name_resolves() -> None:
    for name in pluralism.__all__:
        assert getattr(pluralism, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        pluralism.Nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light() -> None:
    """`import pluralism` must not pull torch or LangGraph: the CLI starts through it."""
    code = (
        "import sys, pluralism; "
        "print(sorted(m for m in ('torch', 'langgraph', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
