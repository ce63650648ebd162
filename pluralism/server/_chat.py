"""From an OpenAI chat request to a pluralism answer: parse, pick the mode, run, describe.

`plan` turns a validated request into what `Pluralism` (or the rules-only pass-through) needs;
`answer` and `stream` run it. Both modes of the proxy go through the same plan, so a request
means the same thing streamed or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from pluralism._json import loads
from pluralism.rules import format_rules
from pluralism.server._config import MODES
from pluralism.server._errors import ProxyError, invalid_body
from pluralism.server._schemas import ChatCompletionRequest, ChatMessage
from pluralism.server._state import ProxyState
from pluralism.types import GenerationParams, Message, PluralResponse, RuleScope, clean_tags

MODEL_PREFIX = "pluralism/"
MODEL_IDS = tuple(f"{MODEL_PREFIX}{m}" for m in MODES)
_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass
class Plan:
    model: str
    mode: str
    stream: bool
    prompt: str
    system: str | None
    history: list[dict[str, Any]]
    # What rules mode forwards: the whole conversation, system messages removed.
    turns: list[Message]
    params: GenerationParams | None
    extras: dict[str, Any] = field(default_factory=dict)
    # The request body as the client sent it: rules mode forwards it to an upstream whole, so
    # fields the proxy does not model (tools, response_format, n, logprobs...) still arrive.
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A streamed chunk from the upstream, forwarded as it came (rules mode)."""

    data: dict[str, Any]


@dataclass
class Final:
    """The end of an answer: its whole text, whether it was streamed, and the `pluralism` info."""

    text: str
    info: dict[str, Any]
    streamed: bool
    # A forwarded upstream reply, sent back as it came (plus the proxy's fields).
    completion: dict[str, Any] | None = None


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before any parsing), and
    with 408 when it takes longer than `timeout_s` to arrive."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise ProxyError(
            408,
            f"The request body did not arrive within {timeout_s:g} s; send it at once (or raise "
            f"body_timeout_s in the proxy config).",
            code="body_timeout",
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = ProxyError(
        413,
        f"The request body is over the {limit:,}-byte limit; shorten the conversation or raise "
        "max_body_bytes in the proxy config.",
        code="request_too_large",
    )
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        # A web page may post text/plain or a form to a local proxy without asking first (no
        # CORS preflight for those), so only JSON is read.
        raise ProxyError(
            415,
            f"The request body is {kind}; send JSON with Content-Type: application/json.",
            code="unsupported_media_type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def parse(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """The validated request and the JSON object it came from."""
    if not body.strip():
        raise ProxyError(
            400,
            "The request body is empty; send a JSON chat completion request.",
            code="empty_body",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProxyError(
            400,
            f"The request body is not valid UTF-8 (byte {exc.start}); encode it as UTF-8.",
            code="invalid_encoding",
        ) from None
    try:
        data = loads(body)
    except ValueError as exc:
        raise ProxyError(
            400,
            f"The request body is not valid JSON ({exc}); send a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise ProxyError(
            400,
            "The request body must be a JSON object with `model` and `messages`.",
            code="invalid_json",
        )
    if _depth_over(data, MAX_DEPTH):
        # The body is forwarded and echoed: nesting beyond what any chat request needs would
        # only reach the JSON encoder's recursion limit later, as a 500.
        raise ProxyError(
            400,
            f"The request body nests deeper than {MAX_DEPTH} levels; no chat request needs "
            f"that, so flatten it.",
            code="invalid_json",
        )
    try:
        return ChatCompletionRequest.model_validate(data), data
    except ValidationError as exc:
        raise invalid_body(exc) from None


def resolve_mode(state: ProxyState, model: str, asked: str | None) -> str:
    """The model name decides; a bare `pluralism` (or the upstream's own model name, so clients
    work unchanged) defers to the body's `pluralism.mode`, then to the config's default."""
    name = model.strip()
    by_name: str | None = None
    if name.lower().startswith(MODEL_PREFIX):
        by_name = name[len(MODEL_PREFIX) :].lower()
        if by_name not in MODES:
            raise ProxyError(
                404,
                f"The model {name!r} does not exist; use one of {', '.join(MODEL_IDS)}.",
                code="model_not_found",
                param="model",
            )
    elif name.lower() != "pluralism" and name != state.config.upstream_model:
        raise ProxyError(
            404,
            f"The model {name!r} does not exist; use one of {', '.join(MODEL_IDS)}.",
            code="model_not_found",
            param="model",
        )
    if asked is not None:
        mode = asked.strip().lower()
        if mode not in MODES:
            raise ProxyError(
                400,
                f"Unknown mode {asked!r}; use one of: {', '.join(MODES)}.",
                code="unknown_mode",
                param="pluralism.mode",
            )
        if by_name is not None and by_name != mode:
            raise ProxyError(
                400,
                f"The model says {by_name!r} but pluralism.mode says {mode!r}; drop one of them.",
                code="conflicting_mode",
                param="pluralism.mode",
            )
        return mode
    return by_name or state.config.default_mode


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    pieces = []
    for part in content:
        if part.type == "text" and part.text is None:
            raise ProxyError(
                400,
                f"Message {index} has a text part without `text`; put the text in it, or drop "
                "the part.",
                code="invalid_value",
                param=f"messages.{index}.content",
            )
        if part.type != "text" or part.text is None:
            raise ProxyError(
                400,
                f"Message {index} has a {part.type!r} part; the proxy accepts text only, so send "
                "text parts or a plain string.",
                code="unsupported_content",
                param=f"messages.{index}.content",
            )
        pieces.append(part.text)
    return "".join(pieces)


def plan(state: ProxyState, req: ChatCompletionRequest, body: dict[str, Any] | None = None) -> Plan:
    extra = req.pluralism
    mode = resolve_mode(state, req.model, extra.mode if extra else None)
    system_parts: list[str] = []
    turns: list[Message] = []
    for i, message in enumerate(req.messages):
        text = _text(message, i)
        if message.role in _SYSTEM_ROLES:
            system_parts.append(text)
        else:
            # Tool results read as user turns: community prompts and chat templates know only
            # user and assistant.
            role = "assistant" if message.role == "assistant" else "user"
            turns.append({"role": role, "content": text})
    users = [i for i, m in enumerate(req.messages) if m.role == "user"]
    if not users:
        raise ProxyError(
            400,
            "The conversation has no user message; add one with the question to answer.",
            code="no_user_message",
            param="messages",
        )
    if mode != "rules" and (not turns or req.messages[-1].role != "user"):
        raise ProxyError(
            400,
            "The last message must be the user's question; end `messages` with a user turn.",
            code="last_message_not_user",
            param="messages",
        )
    extras: dict[str, Any] = {}
    if extra is not None:
        extras = {k: v for k, v in extra.model_dump(exclude={"mode"}).items() if v is not None}
    tags = clean_tags([*state.config.tags, *extras.pop("tags", [])])
    if tags:
        extras["tags"] = tags
    return Plan(
        model=req.model,
        mode=mode,
        stream=bool(req.stream),
        prompt=_text(req.messages[users[-1]], users[-1]),
        system="\n\n".join(p for p in system_parts if p) or None,
        history=[dict(t) for t in turns[:-1]],
        turns=turns,
        params=_params(state, req),
        extras=extras,
        body=body if body is not None else req.model_dump(exclude_none=True),
    )


def _params(state: ProxyState, req: ChatCompletionRequest) -> GenerationParams | None:
    given: dict[str, Any] = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_tokens": req.max_completion_tokens or req.max_tokens,
        "seed": req.seed,
        "stop": [req.stop] if isinstance(req.stop, str) else req.stop,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None  # the proxy's configured meta settings apply
    try:
        return state.config.settings.meta.model_copy(update=given)
    except ValidationError as exc:  # pragma: no cover - the request schema has the same bounds
        raise invalid_body(exc) from None


Item = str | Chunk | Final


# -- running --------------------------------------------------------------------------------


def describe(r: PluralResponse) -> dict[str, Any]:
    """The `pluralism` object of a reply."""
    t = r.trace
    info: dict[str, Any] = {
        "mode": r.mode.value,
        "perspectives": [p.model_dump(exclude_none=True) for p in r.perspectives],
        "distribution": r.distribution,
        "steered_to": r.steered_to,
        "rules": t.rules,
        "rules_version": t.rules_version,
        "routing": t.routing,
        "timings": dict(t.timings),
        "notes": t.notes,
    }
    if t.values:
        info["values"] = t.values
        info["values_version"] = t.values_version
    if t.principles:
        info["principles"] = [p.model_dump() for p in t.principles]
    if t.steer_score is not None:
        info["steer_score"] = t.steer_score
    if t.population_weights:
        info["population_weights"] = t.population_weights
    return info


def _kwargs(p: Plan) -> dict[str, Any]:
    return {
        "mode": p.mode,
        "system": p.system,
        "history": p.history,
        "params": p.params,
        **p.extras,
    }


async def _recall(state: ProxyState, p: Plan) -> tuple[str, dict[str, Any]]:
    """Rules mode: the recalled rules as a system-prompt block, and the `pluralism` info."""
    t0 = time.perf_counter()
    rules = state.rules
    k = state.config.settings.rules_k
    hits: list[Any] = []
    # An empty memory answers without the thread hop that `arecall` costs.
    if rules is not None and k > 0 and len(rules.store.snapshot()) > 0:
        # No communities answer in this mode, so rules scoped to communities stay out.
        population = p.extras.get("population")
        tags = p.extras.get("tags", [])
        scope = RuleScope(populations=[population] if population else [], tags=tags)
        hits = await rules.arecall(p.prompt, k=k, scope=scope)
    info = {
        "mode": "rules",
        "perspectives": [],
        "distribution": None,
        "steered_to": None,
        "rules": [h.rule.id for h in hits],
        "rules_version": rules.version if rules is not None else None,
        "routing": {},
        "timings": {"recall": round((time.perf_counter() - t0) * 1000, 3)},
        "notes": [],
    }
    return format_rules(hits), info


def _conversation(p: Plan, block: str) -> list[Message]:
    """The conversation a local meta model answers: rules, then the client's system prompt."""
    system = "\n\n".join(s for s in (block, p.system or "") if s)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages.extend(p.turns)
    return messages


def _forward_body(p: Plan, block: str) -> dict[str, Any]:
    body = {k: v for k, v in p.body.items() if k != "pluralism"}
    body["messages"] = _with_rules(body["messages"], block)
    return body


def _with_rules(messages: list[Any], block: str) -> list[Any]:
    """The client's own messages with the rules block in front of its system prompt (merged
    into a leading text system message, else a new first message); unchanged without rules."""
    if not block:
        return messages
    first = messages[0] if messages else None
    if (
        isinstance(first, dict)
        and first.get("role") in _SYSTEM_ROLES
        and isinstance(first.get("content"), str)
    ):
        return [{**first, "content": f"{block}\n\n{first['content']}"}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


async def answer(state: ProxyState, p: Plan) -> Final:
    if p.mode == "rules":
        meta = state.meta
        assert meta is not None
        block, info = await _recall(state, p)
        t0 = time.perf_counter()
        if meta.forwards:
            # An upstream gets the client's request whole and its reply comes back whole
            # (usage, finish_reason, tool calls): a policy layer, not a re-encoding.
            completion = await meta.achat(_forward_body(p, block))
            info["timings"]["answer"] = round((time.perf_counter() - t0) * 1000, 3)
            return Final("", info, streamed=False, completion=completion)
        params = p.params or state.config.settings.meta
        (text,) = await meta.agenerate([_conversation(p, block)], params)
        info["timings"]["answer"] = round((time.perf_counter() - t0) * 1000, 3)
        return Final(text.strip(), info, streamed=False)
    response = await state.pluralism.arespond(p.prompt, **_kwargs(p))
    return Final(response.text, describe(response), streamed=False)


async def stream(state: ProxyState, p: Plan) -> AsyncGenerator[Item, None]:
    """Text pieces as the meta-agent produces them (or, forwarding in rules mode, the
    upstream's own chunks), then one `Final`."""
    if p.mode == "rules":
        assert state.meta is not None
        block, info = await _recall(state, p)
        t0 = time.perf_counter()
        if state.meta.forwards:
            body = _forward_body(p, block)
            chunks = 0
            async for raw in state.meta.achat_stream(body):
                chunks += 1
                yield Chunk(raw)
            info["timings"]["answer"] = round((time.perf_counter() - t0) * 1000, 3)
            yield Final("", info, streamed=chunks > 0)
            return
        pieces: list[str] = []
        params = p.params or state.config.settings.meta
        async for piece in state.meta.astream(_conversation(p, block), params):
            pieces.append(piece)
            yield piece
        info["timings"]["answer"] = round((time.perf_counter() - t0) * 1000, 3)
        yield Final("".join(pieces).strip(), info, streamed=bool(pieces))
        return
    streamed = False
    async for item in state.pluralism.astream(p.prompt, **_kwargs(p)):
        if isinstance(item, str):
            streamed = True
            yield item
        else:
            yield Final(item.text, describe(item), streamed=streamed)


MAX_DEPTH = 64


def _depth_over(value: object, limit: int) -> bool:
    """Whether JSON `value` nests more than `limit` levels (iterative: no recursion to blow)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False
