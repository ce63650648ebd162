"""Calls into models, answer memories and the rule memory on behalf of the graph's nodes.

Adapters are resolved here: a community's LoRA adapter is loaded into its (shared) local model on
first use and named per row, so communities with different adapters still share one batch.
An adapter is trained for the bundled base model; a community whose model cannot load one (an
OpenAI-compatible server, the scripted test model) answers without it, and the log says so once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from pluralism.embedding import Embedder
from pluralism.models._protocol import ChatModel
from pluralism.types import Community, Message, RuleHit, RuleScope

log = logging.getLogger(__name__)
# Per model, the communities already warned about, so a busy server logs each once.
_skipped: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


async def recall_rules(rules: Any, prompt: str, k: int, scope: RuleScope) -> list[RuleHit]:
    arecall = getattr(rules, "arecall", None)
    if arecall is not None:
        hits: list[RuleHit] = await arecall(prompt, k=k, scope=scope)
        return hits
    result: list[RuleHit] = await asyncio.to_thread(rules.recall, prompt, k=k, scope=scope)
    return result


def adapter_names(model: ChatModel, members: Sequence[Community]) -> list[str | None] | None:
    """Per-row adapter names for a batch, loading each community's adapter on first use.

    An adapter path is relative to the community file that names it, so a trained community
    (YAML + adapter folder) can be moved as one directory. None: no member uses an adapter, or
    the model cannot take one.
    """
    if not any(c.adapter for c in members):
        return None
    load = getattr(model, "load_adapter", None)
    if load is None:
        warned = _skipped.setdefault(model, set())
        for c in members:
            if c.adapter and c.id not in warned:
                warned.add(c.id)
                log.warning(
                    "community %r names the adapter %s, but its model %r cannot load adapters "
                    "(they are trained for the bundled local model); answering without it",
                    c.id,
                    c.adapter,
                    model.model_id,
                )
        return None
    names: list[str | None] = []
    for c in members:
        if c.adapter and c.id not in getattr(model, "adapters", ()):
            load(c.id, c.file_path(c.adapter))
        names.append(c.id if c.adapter else None)
    return names


def prepare_adapters(models: Any, communities: Sequence[Community]) -> None:
    """Register each community's adapter with its model before the model first runs.

    llama.cpp loads adapters when its engine starts, so registering them all up front starts it
    once instead of once per newly routed community. Models that take no adapters are left to
    `adapter_names`, which says so once when such a community is first asked.
    """
    for c in communities:
        if not c.adapter:
            continue
        model = models.get(c.model)
        if getattr(model, "load_adapter", None) is not None:
            adapter_names(model, [c])


async def generate_for(
    model: ChatModel, batch: list[list[Message]], members: Sequence[Community], params: Any
) -> list[str]:
    names = adapter_names(model, members)
    if names is None:
        return await model.agenerate(batch, params)
    gen = model.generate
    return list(await asyncio.to_thread(lambda: gen(batch, params, adapters=names)))  # type: ignore[call-arg]


async def score_for(
    model: ChatModel, prompts: list[list[Message]], options: list[str], members: Sequence[Community]
) -> list[list[float]]:
    names = adapter_names(model, members)
    if names is None:
        return await model.ascore_batch(prompts, options)
    score = model.score_batch
    return list(await asyncio.to_thread(lambda: score(prompts, options, adapters=names)))  # type: ignore[call-arg]


def answer_memory(community: Community, embedder: Embedder) -> Any:
    """The community's answer memory (`answers:`, relative to its file), or None."""
    if not community.answers:
        return None
    from pluralism.answers import memory_for

    return memory_for(community.file_path(community.answers), embedder)


def with_answers(
    members: Sequence[Community],
    question: str,
    options: list[str],
    dists: list[list[float]],
    embedder: Embedder,
    *,
    k: int,
    weight: float,
) -> tuple[list[list[float]], list[str]]:
    """Each member's option distribution blended with what its answered questions say, and a
    trace note per member that recalled some."""
    from pluralism.answers import blend

    out: list[list[float]] = []
    notes: list[str] = []
    for c, d in zip(members, dists, strict=True):
        memory = answer_memory(c, embedder) if weight > 0 else None
        recalled = memory.recall(question, options, k) if memory is not None else None
        if recalled is None:
            out.append(d)
            continue
        out.append(blend(d, recalled, weight))
        nearest, sim = recalled.neighbours[0]
        notes.append(
            f"answers: {c.id} blended {len(recalled.neighbours)} answered questions at weight "
            f"{weight:g} (nearest {sim:.2f}: {nearest[:80]!r})"
        )
    return out, notes
