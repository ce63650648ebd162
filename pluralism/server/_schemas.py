"""The wire format: OpenAI's chat-completion request and reply, plus the `pluralism` extras.

The request model validates what clients send (strictly: a string where a number belongs is a
400, as OpenAI does). The reply models exist for the OpenAPI document, which schemathesis and
client generators read; the handlers build replies as plain dicts because that is faster.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pluralism.types import OvertonStyle

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None


class PluralismOptions(BaseModel):
    """The `pluralism` body field: everything the model name cannot say."""

    model_config = ConfigDict(strict=True, extra="forbid")

    mode: str | None = Field(None, description="overton, steerable, distributional or rules")
    steer: str | None = Field(None, description="steerable: a community id or a description")
    population: str | None = Field(None, description="distributional: a country or group")
    options: list[str] | None = Field(
        None, min_length=2, max_length=26, description="answer options (2 to 26)"
    )
    principles: bool | None = Field(None, description="generate situated principles first")
    overton_style: OvertonStyle | None = Field(
        None, description="overton: synthesize (the meta model writes it) or list (the drafts)"
    )
    tags: list[str] | None = Field(
        None, max_length=32, description="what the request is about, for tag-scoped rules"
    )


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body; unknown fields are accepted and ignored, as OpenAI clients send
    many (`n`, `user`, `stream_options`...)."""

    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(description="pluralism/overton, pluralism/steerable, ... or pluralism")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    seed: int | None = None
    stop: str | list[str] | None = None
    pluralism: PluralismOptions | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: Any = None


class PluralismInfo(BaseModel):
    """What pluralism added: who spoke, which rules applied, how long each step took (ms)."""

    mode: str
    perspectives: list[dict[str, Any]] = Field(default_factory=list)
    distribution: dict[str, float] | None = None
    steered_to: str | None = None
    rules: list[str] = Field(default_factory=list)
    rules_version: str | None = None
    routing: dict[str, float] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    pluralism: PluralismInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    reasons: list[str] = Field(default_factory=list)
    checks: dict[str, Any] = Field(default_factory=dict)
