"""The ASGI app: `create_app(config)` wires routes, errors, metrics and the overhead header.

The chat handler is a plain `Request -> Response` function: FastAPI supplies routing and the
OpenAPI document, while the body is read and validated by hand so that a too-large body is
refused before parsing and every failure is an OpenAI-shaped error.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pluralism._json import dumps
from pluralism._redact import redact_logs
from pluralism.server import _chat
from pluralism.server._config import MODES, ProxyConfig
from pluralism.server._errors import (
    ProxyError,
    error_response,
    from_exception,
    http_error,
    unhandled,
)
from pluralism.server._reply import HEADER, authorize, chat_completion
from pluralism.server._schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ModelList,
)
from pluralism.server._state import ProxyState

log = logging.getLogger("pluralism.server")
CHAT_PATH = "/v1/chat/completions"
Handler = Callable[[Request], Awaitable[Response]]
_HEADER_B = HEADER.encode()
# One server-sent event: `data` is a chat.completion.chunk as JSON, or the final `[DONE]`.
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "a chat.completion.chunk (JSON) or [DONE]"},
        "event": {"type": "string"},
    },
}
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


class ProxyApp(FastAPI):
    """FastAPI with the chat route answered ahead of the middleware stack.

    The chat handler authenticates, times and maps every failure to an OpenAI error itself, so
    Starlette's exception and error middlewares, FastAPI's exit stack and the router only cost
    CPU on that route: skipping them is most of what keeps pass-through overhead low under
    load. Every other route goes through FastAPI as usual.
    """

    chat: Handler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.chat is not None and scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path == CHAT_PATH:
                await self._chat(self.chat, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    @staticmethod
    async def _chat(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await handler(Request(scope, receive))
            await response(scope, receive, tracked)
        except Exception as exc:
            # The handler answers its own errors; this is the last net, as the error
            # middleware is for the other routes: log it, and answer if nothing was sent.
            log.exception("Unhandled error answering a chat request")
            if not started:
                reply = await unhandled(Request(scope, receive), exc)
                await reply(scope, receive, send)


def create_app(
    config: ProxyConfig | None = None, *, embedder: Any = None, state: ProxyState | None = None
) -> ProxyApp:
    """A proxy app; its models load in the background once it starts (see `/readyz`).

    `embedder` lets a process that already holds MiniLM (tests, an app embedding the proxy)
    share it instead of loading another copy. Pass `state` to keep a handle on the proxy's
    state (tests do); the app itself holds it only in its handlers' closures.
    """
    # A proxy's logs go to operators' log stores: no credential reaches them, whoever logs it.
    redact_logs()
    if state is None:
        state = ProxyState.from_config(config or ProxyConfig())
    elif config is not None and config is not state.config:
        raise ValueError("pass either a config or a state built from it, not both")

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

    app = ProxyApp(
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
        return http_error(exc.status_code, exc.detail, dict(exc.headers or {}))

    app.add_exception_handler(StarletteHTTPException, starlette_error)

    async def proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    app.add_exception_handler(ProxyError, proxy_error)

    async def chat_completions(request: Request) -> Response:
        return await chat_completion(state, request)

    async def list_models(request: Request) -> Response:
        authorize(state, request)
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

    # POSTs to the chat route are answered by `ProxyApp.__call__` before FastAPI sees them; the
    # FastAPI route documents it in /openapi.json (and answers if `chat` is unset).
    app.chat = chat_completions
    app.add_api_route(
        CHAT_PATH,
        chat_completions,
        methods=["POST"],
        summary="Create a chat completion (OpenAI schema, plus a `pluralism` object)",
        response_model=None,
        responses={
            200: {
                "model": ChatCompletion,
                "description": "A chat.completion, or with stream: true an SSE stream of "
                "chat.completion.chunk events ending in `data: [DONE]`",
                "content": {"text/event-stream": {"schema": _SSE_EVENT}},
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
            # The names this proxy answers to; validated by hand for a 404 rather than a 400.
            names = [*_chat.MODEL_IDS, "pluralism"]
            if state.config.upstream_model:
                names.append(state.config.upstream_model)
            request_schema["properties"]["model"]["enum"] = names
            mode = components["PluralismOptions"]["properties"]["mode"]
            mode["anyOf"] = [{"type": "string", "enum": list(MODES)}, {"type": "null"}]
            components["ChatCompletionRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _load(state: ProxyState, embedder: Any) -> None:
    if state.ready:  # loaded by the caller before serving
        return
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


_WORKER_CONFIG = "PLURALISM_WORKER_CONFIG"
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def worker_env(config: ProxyConfig) -> Iterator[None]:
    """The environment `worker_app` reads in each worker: the config with its secrets (worker
    processes inherit it; nothing is written to disk), and a fresh directory for
    prometheus_client's multi-process metrics unless the operator set one."""
    data = config.model_dump(mode="json")
    if config.upstream_api_key is not None:
        data["upstream_api_key"] = config.upstream_api_key.get_secret_value()
    data["api_keys"] = [k.get_secret_value() for k in config.api_keys]
    saved = {k: os.environ.get(k) for k in (_WORKER_CONFIG, _METRICS_DIR)}
    own_dir = None if os.environ.get(_METRICS_DIR) else tempfile.mkdtemp(prefix="pluralism-")
    os.environ[_WORKER_CONFIG] = json.dumps(data)
    if own_dir is not None:
        os.environ[_METRICS_DIR] = own_dir
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def worker_app() -> ProxyApp:
    """The app of one worker of `pluralism serve --workers N` (uvicorn calls it by name)."""
    raw = os.environ.get(_WORKER_CONFIG)
    if raw is None:
        raise RuntimeError(f"{_WORKER_CONFIG} is not set; start workers with `pluralism serve`")
    return create_app(ProxyConfig.model_validate_json(raw))


def _version() -> str:
    from pluralism import __version__

    return __version__
