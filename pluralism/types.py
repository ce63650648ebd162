"""Pydantic models shared by every part of pluralism.

Everything that crosses a seam (config files, the graph state, the library's answers, the proxy's
JSON) is one of these models, so that one validation story covers the YAML a policy author writes
and the JSON an operator's client sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pluralism.errors import InputError


class Mode(StrEnum):
    """How the meta-agent aggregates community drafts (Modular Pluralism / the Roadmap)."""

    OVERTON = "overton"
    STEERABLE = "steerable"
    DISTRIBUTIONAL = "distributional"


class Message(TypedDict):
    """One chat message, as OpenAI-compatible servers and chat templates expect it."""

    role: str
    content: str


class GenerationParams(BaseModel):
    """Sampling settings passed to every `ChatModel.generate` call."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(96, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # SmolLM2 loops under greedy decoding; a penalty keeps short drafts readable.
    repetition_penalty: float = Field(1.3, ge=1.0, le=3.0)
    seed: int | None = None
    stop: list[str] | None = None


class ModelSpec(BaseModel):
    """Which backend and model a community (or the meta-agent) uses."""

    model_config = ConfigDict(extra="forbid")

    # local: llama.cpp in-process (the embedded default); transformers: the same or any
    # transformers model on torch (the train extra); openai: any OpenAI-compatible server.
    backend: Literal["local", "transformers", "openai", "scripted"] = "local"
    # For `local`: a .gguf file or a directory holding one; for `transformers`: also a
    # transformers model directory. None means the bundled SmolLM2 default.
    # For `openai`: the model name sent to the server.
    name: str | None = None
    base_url: str | None = None
    # The *name* of an environment variable holding the key, so keys never live in files.
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    # For `openai` against a llama.cpp server started with `--lora`: the adapter to apply per
    # request, by its id or file name (as `GET /lora-adapters` lists them). vLLM serves each
    # adapter as a model of its own (`--lora-modules europe=...`): set `name: europe` instead.
    lora: str | int | None = None

    @model_validator(mode="after")
    def _lora_needs_a_server(self) -> ModelSpec:
        if self.lora is not None and self.backend != "openai":
            raise ValueError(
                "`lora` names an adapter on a llama.cpp server (backend: openai); for the "
                "embedded model, put the adapter folder in the community's `adapter:` field"
            )
        return self

    def key(self) -> tuple[str, str | None, str | None] | tuple[str, str | None, str | None, str]:
        """Identity used to share one loaded model between communities."""
        if self.lora is not None:
            return (self.backend, self.name, self.base_url, str(self.lora))
        return (self.backend, self.name, self.base_url)


class Membership(BaseModel):
    """Which populations a community stands for, with weights.

    `countries` maps a country name to how much of that country this community speaks for
    (a continent covers its countries); `groups` maps a survey group such as
    ``POLPARTY:Republican`` to the same kind of weight (a perspective stands for groups).
    """

    model_config = ConfigDict(extra="forbid")

    countries: dict[str, float] = Field(default_factory=dict)
    groups: dict[str, float] = Field(default_factory=dict)

    @field_validator("countries", "groups")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        for name, w in v.items():
            if w < 0:
                raise ValueError(f"weight for {name!r} is {w}; weights must be >= 0")
        return v


class Community(BaseModel):
    """One community LM: who it speaks for and how it is run (one YAML file in communities/)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    exemplars: list[str] = Field(default_factory=list)
    persona: str = Field(min_length=1)
    model: ModelSpec = Field(default_factory=ModelSpec)
    adapter: str | None = None
    # A JSONL file of questions this community answered (pluralism.answers), relative to the
    # community file; recalled when its model scores options.
    answers: str | None = None
    population: Membership = Field(default_factory=Membership)
    # Where the community came from, for error messages; not part of the file format.
    source: str | None = Field(default=None, exclude=True)

    def file_path(self, relative: str) -> Path:
        """A path the file names (`adapter:`, `answers:`), relative to the file itself, so a
        community folder can move as one; without a file, relative to the working directory."""
        return (Path(self.source).parent if self.source else Path.cwd()) / relative


class RuleScope(BaseModel):
    """Where a rule applies; an empty list means "everywhere" on that axis."""

    model_config = ConfigDict(extra="forbid")

    communities: list[str] = Field(default_factory=list)
    populations: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Request tags as recall compares them: stripped, no blanks or repeats, sorted."""
    return sorted({str(t).strip() for t in tags if str(t).strip()})


class Rule(BaseModel):
    """One rule of the external memory (a law, norm or code of conduct)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=128)
    text: str = Field(min_length=1, max_length=20_000)
    scope: RuleScope = Field(default_factory=RuleScope)
    priority: int = Field(50, ge=0, le=100)
    always: bool = False
    source: str | None = None
    examples: list[str] = Field(default_factory=list)


class RuleHit(BaseModel):
    """A recalled rule with its fused score and why it was recalled."""

    rule: Rule
    score: float
    dense: float | None = None
    lexical: float | None = None
    why: str = ""


class Principle(BaseModel):
    """A situated principle (SPRI) with the critic's 1-5 score."""

    text: str
    score: float | None = None


class Perspective(BaseModel):
    """One community's contribution to an answer."""

    community: str
    name: str = ""
    weight: float
    text: str
    distribution: dict[str, float] | None = None


class Trace(BaseModel):
    """What happened while answering, for audit and debugging."""

    routing: dict[str, float] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    rules: list[str] = Field(default_factory=list)
    rules_version: str | None = None
    values: list[str] = Field(default_factory=list)
    values_version: str | None = None
    principles: list[Principle] = Field(default_factory=list)
    principle_rounds: int = 0
    population_weights: dict[str, float] = Field(default_factory=dict)
    steer_score: float | None = None
    merged: list[list[str]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class PluralResponse(BaseModel):
    """The answer to one request, in any mode."""

    text: str
    mode: Mode
    perspectives: list[Perspective] = Field(default_factory=list)
    distribution: dict[str, float] | None = None
    steered_to: str | None = None
    trace: Trace = Field(default_factory=Trace)


# How an Overton answer is written: see `Settings.overton_style`.
OvertonStyle = Literal["synthesize", "list"]
OVERTON_STYLES: tuple[OvertonStyle, ...] = ("synthesize", "list")


def parse_overton_style(value: str) -> OvertonStyle:
    """`value` as an Overton style, or an `InputError` naming the styles there are."""
    for known in OVERTON_STYLES:
        if value == known:
            return known
    raise InputError(f"Unknown Overton style {value!r}; use one of: {', '.join(OVERTON_STYLES)}.")


class PluralRequest(BaseModel):
    """A validated request; the library and the proxy both build one."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    mode: Mode
    steer: str | None = None
    population: str | None = None
    options: list[str] | None = None
    principles: bool | None = None
    # What the request is about, for rules scoped by `tags` (e.g. medical, finance).
    tags: list[str] = Field(default_factory=list)
    system: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    params: GenerationParams | None = None
    overton_style: OvertonStyle | None = None  # None: the instance's setting
