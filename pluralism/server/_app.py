"""The ASGI app: `create_app(config)` wires routes, errors, metrics and the overhead header.

The chat handler is a plain `Request -> Response` function: FastAPI supplies routing and the
OpenAPI document, while the body is read and validated by hand so that a too-large body is
refused before parsing and every failure is an OpenAI-shaped error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pluralism.server import _chat
from pluralism.server._config import ProxyConfig
from pluralism.server._errors import (
    ProxyError,
    error_body,
    error_response,
    from_exception,
    http_error,
    unhandled,
)
from pluralism.server._json import dumps
from pluralism.server._schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ModelList,
)
from pluralism.server._state import ProxyState
from pluralism.server._timing import CLOCK, ModelClock

log = logging.getLogger("pluralism.server")
HEADER = "x-pluralism-overhead-ms"
_HEADER_B = HEADER.encode()
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in {
        400: "Malformed JSON, wrong types, missing messages, unknown mode, invalid UTF-8",
        401: "Missing or wrong API key (when keys are configured)",
        404: "Unknown model",
        413: "Body over max_body_bytes",
        502: "The upstream refused, failed or answered garbage",
        503: "Models still loading",
        504: "The upstream timed out",
    }.items()
}


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


class OverheadHeader:
    """Adds the overhead header to replies whose handler did not set its own (health, models,
    404s): for those, all of the time is overhead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(k == _HEADER_B for k, _ in headers):
                    headers.append((_HEADER_B, f"{_ms(t0):.3f}".encode()))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(config: ProxyConfig | None = None, *, embedder: Any = None) -> FastAPI:
    """A proxy app; its models load in the background once it starts (see `/readyz`).

    `embedder` lets a process that already holds MiniLM (tests, an app embedding the proxy)
    share it instead of loading another copy.
    """
    state = ProxyState.from_config(config or ProxyConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(state, embedder))
        try:
            yield
        finally:
            loading.cancel()
            if state.client is not None:
                await state.client.aclose()
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="pluralism proxy",
        version=_version(),
        description="An OpenAI-compatible chat API whose answers reflect many communities.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(OverheadHeader)
    app.add_exception_handler(Exception, unhandled)

    async def starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return http_error(exc.status_code, exc.detail)

    app.add_exception_handler(StarletteHTTPException, starlette_error)

    async def chat_completions(request: Request) -> Response:
        return await _chat_completion(state, request)

    async def list_models(request: Request) -> Response:
        _authorize(state, request)
        created = int(state.started)
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "pluralism"}
            for m in _chat.MODEL_IDS
        ]
        return Response(dumps({"object": "list", "data": data}), media_type="application/json")

    async def healthz() -> Response:
        return Response(dumps({"status": "ok"}), media_type="application/json")

    async def readyz() -> Response:
        ok, reasons, checks = await asyncio.to_thread(state.readiness)
        body = {"status": "ready" if ok else "not ready", "reasons": reasons, "checks": checks}
        return Response(dumps(body), status_code=200 if ok else 503, media_type="application/json")

    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/v1/chat/completions",
        chat_completions,
        methods=["POST"],
        summary="Create a chat completion (OpenAI schema, plus a `pluralism` object)",
        response_model=None,
        responses={
            200: {
                "model": ChatCompletion,
                "description": "A chat.completion, or with stream: true an SSE stream of "
                "chat.completion.chunk events ending in `data: [DONE]`",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                    }
                },
            }
        },
    )
    app.add_api_route(
        "/v1/models",
        list_models,
        methods=["GET"],
        response_model=None,
        responses={
            200: {"model": ModelList, "description": "The four pluralism models"},
            401: _ERRORS[401],
        },
    )
    app.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": Health, "description": "Alive"}},
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=None,
        responses={
            200: {"model": Health, "description": "Ready to answer"},
            503: {"model": Health, "description": "Not ready, with reasons"},
        },
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_model=None,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            request_schema = ChatCompletionRequest.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["ChatCompletionRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.proxy = state  # for tests and embedding apps; handlers use the closure
    return app


async def _load(state: ProxyState, embedder: Any) -> None:
    try:
        await asyncio.to_thread(state.load, embedder)
    except Exception as exc:
        _, message, _, _ = from_exception(exc)
        state.load_error = message
        log.error("The proxy could not start: %s", message)
    else:
        # Torch, transformers and LangGraph leave millions of long-lived objects; without this
        # every full collection walks them all and stalls requests for hundreds of ms (p99).
        gc.collect()
        gc.freeze()
        log.info("pluralism proxy ready (meta model: %s)", state.upstream_label)


def _version() -> str:
    from pluralism import __version__

    return __version__


def _authorize(state: ProxyState, request: Request) -> None:
    if not state.key_hashes:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    presented = key.strip() if scheme.lower() == "bearer" else None
    if not state.check_key(presented):
        raise ProxyError(
            401,
            "Missing API key; send it as 'Authorization: Bearer <key>'."
            if not presented
            else "Wrong API key; check the key the proxy operator gave you.",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )


async def _chat_completion(state: ProxyState, request: Request) -> Response:
    t0 = time.perf_counter()
    clock = ModelClock()
    CLOCK.set(clock)  # each request runs in its own context, so this is per request
    metrics = state.metrics
    mode = "unknown"
    metrics.in_flight.inc()
    streaming = False
    try:
        _authorize(state, request)
        if not state.ready:
            raise _not_ready(state)
        p = _chat.plan(
            state, _chat.parse(await _chat.read_body(request, state.config.max_body_bytes))
        )
        mode = p.mode
        if p.stream:
            response = await _start_stream(state, p, t0, clock)
            streaming = True
            return response
        final = await _chat.answer(state, p)
        overhead = _finish(state, final, t0, clock, stream=False)
        body = dumps(_completion(p, final))
        return Response(body, media_type="application/json", headers={HEADER: f"{overhead:.3f}"})
    except Exception as exc:
        status, message, code, param = from_exception(exc)
        metrics.errors.labels(code or "error").inc()
        metrics.requests.labels(mode, str(status)).inc()
        headers = {HEADER: f"{max(_ms(t0) - clock.wall_ms, 0.0):.3f}"}
        if isinstance(exc, ProxyError):
            headers.update(exc.headers)
        return error_response(status, message, code, param, headers)
    finally:
        if not streaming:
            metrics.in_flight.dec()


def _not_ready(state: ProxyState) -> ProxyError:
    if state.load_error:
        return ProxyError(503, f"The proxy failed to start: {state.load_error}", code="not_ready")
    return ProxyError(
        503,
        "The proxy is still loading its models; retry in a few seconds (GET /readyz says when).",
        code="not_ready",
        headers={"retry-after": "2"},
    )


def _finish(
    state: ProxyState, final: _chat.Final, t0: float, clock: ModelClock, *, stream: bool
) -> float:
    """Proxy-level timings into the reply and the metrics; returns the overhead in ms."""
    total = _ms(t0)
    overhead = round(max(total - clock.wall_ms, 0.0), 3)
    timings = final.info["timings"]
    timings.update(request=total, models=round(clock.wall_ms, 3), overhead=overhead)
    m = state.metrics
    mode = final.info["mode"]
    m.requests.labels(mode, "200").inc()
    m.latency.labels(mode, "true" if stream else "false").observe(total / 1000)
    m.overhead.labels(mode).observe(overhead / 1000)
    m.observe_steps(timings)
    return overhead


def _completion(p: _chat.Plan, final: _chat.Final) -> dict[str, Any]:
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": p.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": final.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "pluralism": final.info,
    }


def _completion_id() -> str:
    return f"chatcmpl-{os.urandom(12).hex()}"


async def _start_stream(state: ProxyState, p: _chat.Plan, t0: float, clock: ModelClock) -> Response:
    """Wait for the first piece before answering, so failures before it (bad steer target,
    upstream down) still get a proper status; headers then carry the overhead so far."""
    items = _chat.stream(state, p)
    try:
        first = await items.__anext__()
    except BaseException:
        await items.aclose()
        raise
    first_ms = _ms(t0)
    first_token = first_ms if isinstance(first, str) else None
    if first_token is not None:
        state.metrics.first_token.labels(p.mode).observe(first_token / 1000)
    overhead = max(first_ms - clock.wall_ms, 0.0)
    return StreamingResponse(
        _sse(state, p, first, items, t0, clock, first_token),
        media_type="text/event-stream",
        headers={HEADER: f"{overhead:.3f}", "cache-control": "no-cache"},
    )


async def _sse(
    state: ProxyState,
    p: _chat.Plan,
    first: str | _chat.Final,
    items: AsyncIterator[str | _chat.Final],
    t0: float,
    clock: ModelClock,
    first_token: float | None,
) -> AsyncIterator[bytes]:
    head = {
        "id": _completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": p.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    done = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        item = first
        while isinstance(item, str):
            yield chunk({"content": item})
            item = await items.__anext__()
        if not item.streamed and item.text:
            yield chunk({"content": item.text})
        if first_token is not None:
            item.info["timings"]["first_token"] = first_token
        _finish(state, item, t0, clock, stream=True)
        yield chunk({}, "stop", pluralism=item.info)
        yield b"data: [DONE]\n\n"
        done = True
    except Exception as exc:
        # Headers are gone: the error travels as an SSE event, which OpenAI clients raise.
        status, message, code, param = from_exception(exc)
        state.metrics.errors.labels(code or "error").inc()
        state.metrics.requests.labels(p.mode, str(status)).inc()
        yield b"data: " + error_body(status, message, code, param) + b"\n\n"
        done = True
    finally:
        if not done:  # the client went away mid-stream
            state.metrics.requests.labels(p.mode, "disconnected").inc()
        state.metrics.in_flight.dec()
        await items.aclose()  # type: ignore[attr-defined]
