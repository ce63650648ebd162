"""Settings of one `Pluralism` instance: routing, generation and rules, with safe defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pluralism.types import GenerationParams, Mode, ModelSpec, OvertonStyle


class Settings(BaseModel):
    """Everything a `Pluralism` instance can be tuned with; every field has a default."""

    model_config = ConfigDict(extra="forbid")

    default_mode: Mode = Mode.OVERTON
    # Router: prompt-gated activation of communities (Cultural Palette).
    temperature: float = Field(0.08, gt=0)
    top_k: int = Field(3, ge=1)
    min_weight: float = Field(0.05, ge=0, lt=1)
    steer_threshold: float = Field(0.25, ge=-1, le=1)
    steer_method: Literal["embedding", "model"] = "embedding"
    # Overton: drafts at least this similar are one perspective.
    merge_threshold: float = Field(0.9, gt=0, le=1)
    # Overton answer: "synthesize" has the meta model write one answer from the drafts, which
    # needs a capable meta model; "list" returns the drafts themselves under their communities'
    # names, with no meta call, so a small meta model cannot garble or drop a view.
    overton_style: OvertonStyle = "synthesize"
    # Overton answers end by naming the values, rights and duties the prompt touches, recalled
    # from the values catalogue (values/): up to this many; 0 leaves the answer as written.
    # Value Kaleidoscope situations have about seven each; five keeps the list short enough to
    # read. Entries below the rule memory's recall threshold are left out, so some answers
    # name fewer.
    values_k: int = Field(5, ge=0, le=20)
    # Distributional: an unknown population is an error unless this is False (then uniform).
    strict_population: bool = True
    # Scoring options: how much a community's answers file (pluralism.answers) weighs against its
    # model, and how many answered questions it recalls. Both chosen on questions that no shipped
    # adapter trained on and no benchmark holds out (bench/bench_answers.py): there the answers
    # alone (JS ~0.18) beat the adapters alone (~0.23), and 0.9 was within 0.002 of the best
    # weight (1.0) while keeping the community's own model in the answer.
    answers_weight: float = Field(0.9, ge=0, le=1)
    answers_k: int = Field(10, ge=1, le=1000)
    # Threads of the embedded llama.cpp models. None: $PLURALISM_THREADS, else the cores that
    # are free when a model starts (llama.cpp threads spin, so more than the free cores is
    # slower, not faster). An impossible count is refused when the model starts.
    threads: int | None = Field(None, ge=1, le=1024)
    draft: GenerationParams = Field(default_factory=lambda: GenerationParams(max_tokens=64))
    meta: GenerationParams = Field(default_factory=lambda: GenerationParams(max_tokens=160))
    meta_model: ModelSpec = Field(default_factory=ModelSpec)
    # Rules memory.
    rules_k: int = Field(5, ge=0, le=100)
    principles: bool = False
    max_principles: int = Field(3, ge=1, le=10)
    principle_threshold: float = Field(4.0, ge=1, le=5)
    principle_rounds: int = Field(3, ge=1, le=3)
