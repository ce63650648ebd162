"""What the request flow's nodes share: the `Runtime` they read and the `State` they write.

Kept apart from the wiring in `pluralism.graph`, so the flow reads top to bottom there and the
schema every node agrees on is in one place here.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from pluralism.embedding import Embedder
from pluralism.models._protocol import ChatModel
from pluralism.router import Router, SteerMatch
from pluralism.settings import Settings
from pluralism.types import (
    Community,
    Message,
    Perspective,
    PluralRequest,
    PluralResponse,
    Principle,
    RuleHit,
)


@dataclass
class Runtime:
    """The parts every node reads; one per `Pluralism` instance."""

    router: Router
    embedder: Embedder
    settings: Settings
    community_model: Any  # Callable[[Community], ChatModel]
    meta: ChatModel
    rules: Any = None  # a RuleMemory, when one is configured
    values: Any = None  # the values catalogue: a RuleMemory of value statements
    communities: dict[str, Community] = field(default_factory=dict)
    principle_cache: Any = None  # a rules.PrincipleCache, shared by every request


def _merge(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    return {**left, **right}


class State(TypedDict, total=False):
    request: PluralRequest
    stream: bool
    active: dict[str, float]
    routing: dict[str, float]
    steer: SteerMatch | None
    population: dict[str, float]
    notes: Annotated[list[str], operator.add]
    hits: list[RuleHit]
    rules_version: str | None
    values: list[RuleHit]
    values_version: str | None
    context: str
    principles: list[Principle]
    principle_rounds: int
    drafts: Annotated[list[Perspective], operator.add]
    meta_messages: list[Message] | None
    response: PluralResponse
    timings: Annotated[dict[str, float], _merge]
    model_ms: Annotated[float, operator.add]
    models: Annotated[dict[str, str], _merge]


class DraftTask(TypedDict):
    request: PluralRequest
    context: str
    members: dict[str, float]
    drafts: int  # how many drafts the request gets in all, across every model's batch
