"""Answering one chat request: auth, the JSON reply, the SSE stream, metrics and timings.

Timings are measured here, around everything the proxy does, so that the overhead header and
the `pluralism.timings` of a reply describe the same interval.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pluralism._json import dumps
from pluralism.server import _chat
from pluralism.server._errors import ProxyError, error_body, error_response, from_exception
from pluralism.server._state import ProxyState
from pluralism.server._timing import CLOCK, ModelClock

HEADER = "x-pluralism-overhead-ms"


def ms_since(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def authorize(state: ProxyState, request: Request) -> None:
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


async def chat_completion(state: ProxyState, request: Request) -> Response:
    t0 = time.perf_counter()
    clock = ModelClock()
    CLOCK.set(clock)  # each request runs in its own context, so this is per request
    metrics = state.metrics
    mode = "unknown"
    metrics.in_flight.inc()
    streaming = False
    try:
        authorize(state, request)
        if not state.ready:
            raise _not_ready(state)
        req, raw = _chat.parse(
            await _chat.read_body(request, state.config.max_body_bytes, state.config.body_timeout_s)
        )
        p = _chat.plan(state, req, raw)
        mode = p.mode
        release = _admit(state, p)
        try:
            if p.stream:
                started = await until_disconnect(
                    request, _start_stream(state, p, t0, clock, release)
                )
                if started is None:  # left before the first piece
                    metrics.count(mode, "disconnected")
                    return Response(status_code=499)
                streaming = True
                return started
            final = await until_disconnect(request, _chat.answer(state, p))
        finally:
            if not streaming:
                release()
        if final is None:  # the client left: its model work was cancelled, nobody to answer
            metrics.count(mode, "disconnected")
            return Response(status_code=499)
        overhead = _finish(state, final, t0, clock, stream=False)
        body = dumps(_completion(p, final))
        return Response(body, media_type="application/json", headers={HEADER: f"{overhead:.3f}"})
    except Exception as exc:
        status, message, code, param = from_exception(exc)
        metrics.errors.labels(code or "error").inc()
        metrics.count(mode, str(status))
        headers = {HEADER: f"{max(ms_since(t0) - clock.wall_ms, 0.0):.3f}"}
        if isinstance(exc, ProxyError):
            headers.update(exc.headers)
        return error_response(status, message, code, param, headers)
    except asyncio.CancelledError:
        # The server is stopping and its grace period is over (a client leaving is handled
        # above): the work is cancelled, and the client gets a reason it can act on instead
        # of the server's bare 500.
        metrics.count(mode, "503")
        return error_response(
            503,
            "The proxy is shutting down; retry, and another replica (or this one, restarted) "
            "will answer.",
            "shutting_down",
            headers={"retry-after": "1"},
        )
    finally:
        if not streaming:
            metrics.in_flight.dec()


T = TypeVar("T")


async def until_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None once the client disconnects, which cancels `work`: an answer
    nobody waits for must not hold the model (llama.cpp stops decoding on cancel)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return None
        raise
    finally:
        watcher.cancel()


def _admit(state: ProxyState, p: _chat.Plan) -> Callable[[], None]:
    """Count a request that runs models here, refusing one beyond `max_model_requests`; the
    function that uncounts it (once, however often it is called)."""
    if p.mode == "rules" and state.meta is not None and state.meta.forwards:
        return lambda: None  # forwarded: the upstream's capacity, not this process's
    limit = state.config.model_request_limit()
    if state.model_requests >= limit:
        state.metrics.errors.labels("busy").inc()
        raise ProxyError(
            503,
            f"The proxy is busy: {limit} requests are already running models here "
            f"(max_model_requests); retry after a few seconds.",
            code="busy",
            headers={"retry-after": "5"},
        )
    state.model_requests += 1
    done: list[bool] = []

    def release() -> None:
        if not done:
            done.append(True)
            state.model_requests -= 1

    return release


def _not_ready(state: ProxyState) -> ProxyError:
    if state.load_error:
        return ProxyError(503, f"The proxy failed to start: {state.load_error}", code="not_ready")
    if state.waiting:
        return ProxyError(
            503,
            f"The proxy is waiting to start: {state.waiting}",
            code="not_ready",
            headers={"retry-after": "5"},
        )
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
    total = ms_since(t0)
    overhead = round(max(total - clock.wall_ms, 0.0), 3)
    timings = final.info["timings"]
    timings.update(request=total, models=round(clock.wall_ms, 3), overhead=overhead)
    m = state.metrics
    mode = final.info["mode"]
    m.count(mode, "200")
    m.observe_request(mode, stream, total / 1000, overhead / 1000)
    m.observe_steps(timings)
    return overhead


def _completion(p: _chat.Plan, final: _chat.Final) -> dict[str, Any]:
    if final.completion is not None:
        # The client asked for a pluralism model name; the rest is the upstream's reply.
        base = {"object": "chat.completion", "created": int(time.time())}
        return {**base, **final.completion, "model": p.model, "pluralism": final.info}
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


async def _start_stream(
    state: ProxyState, p: _chat.Plan, t0: float, clock: ModelClock, release: Callable[[], None]
) -> Response:
    """Wait for the first piece before answering, so failures before it (bad steer target,
    upstream down) still get a proper status; headers then carry the overhead so far."""
    items = _chat.stream(state, p)
    try:
        first = await items.__anext__()
    except BaseException:
        await items.aclose()
        raise
    first_ms = ms_since(t0)
    first_token = first_ms if not isinstance(first, _chat.Final) else None
    if first_token is not None:
        state.metrics.first_token.labels(p.mode).observe(first_token / 1000)
    overhead = max(first_ms - clock.wall_ms, 0.0)
    started: list[bool] = []
    return _Stream(
        state,
        p,
        items,
        _sse(state, p, first, items, t0, clock, first_token, started),
        started,
        release,
        headers={HEADER: f"{overhead:.3f}", "cache-control": "no-cache"},
    )


class _Stream(StreamingResponse):
    """Closes the answer's generators however the response ends: a client that leaves before
    the first byte never starts the body, so its own `finally` would never run."""

    def __init__(
        self,
        state: ProxyState,
        p: _chat.Plan,
        items: AsyncGenerator[_chat.Item, None],
        body: AsyncGenerator[bytes, None],
        started: list[bool],
        release: Callable[[], None],
        headers: dict[str, str],
    ) -> None:
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._state, self._plan, self._items, self._body = state, p, items, body
        self._started = started
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._started:
                # Never started: do what the body's `finally` would have done.
                self._state.metrics.count(self._plan.mode, "disconnected")
                self._state.metrics.in_flight.dec()
                await self._items.aclose()
            await self._body.aclose()
            self._release()


async def _sse(
    state: ProxyState,
    p: _chat.Plan,
    first: _chat.Item,
    items: AsyncGenerator[_chat.Item, None],
    t0: float,
    clock: ModelClock,
    first_token: float | None,
    started: list[bool],
) -> AsyncGenerator[bytes, None]:
    head = {
        "id": _completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": p.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    started.append(True)
    done = False
    # Forwarded upstream chunks (rules mode) go out as they came, except that those from the
    # one with a finish_reason on are held one behind, so the last can carry the `pluralism`
    # object; the role chunk is then the upstream's own.
    passthrough = isinstance(first, _chat.Chunk)
    pending: dict[str, Any] | None = None
    finished = False
    try:
        if not passthrough:
            yield chunk({"role": "assistant", "content": ""})
        item = first
        while not isinstance(item, _chat.Final):
            if isinstance(item, _chat.Chunk):
                # Lenient servers omit `object`/`created`; strict clients need them.
                data = {**head, **item.data, "model": p.model}
                finished = finished or any(
                    isinstance(c, dict) and c.get("finish_reason")
                    for c in data.get("choices") or []
                )
                if pending is not None:
                    yield b"data: " + dumps(pending) + b"\n\n"
                    pending = None
                if finished:
                    pending = data
                else:
                    yield b"data: " + dumps(data) + b"\n\n"
                head["id"] = data.get("id", head["id"])
            else:
                yield chunk({"content": item})
            item = await items.__anext__()
        if not item.streamed and item.text:
            yield chunk({"content": item.text})
        if first_token is not None:
            item.info["timings"]["first_token"] = first_token
        _finish(state, item, t0, clock, stream=True)
        if pending is not None and finished:
            yield b"data: " + dumps({**pending, "pluralism": item.info}) + b"\n\n"
        else:
            if pending is not None:
                yield b"data: " + dumps(pending) + b"\n\n"
            yield chunk({}, "stop", pluralism=item.info)
        yield b"data: [DONE]\n\n"
        done = True
    except Exception as exc:
        # Headers are gone: the error travels as an SSE event, which OpenAI clients raise.
        status, message, code, param = from_exception(exc)
        state.metrics.errors.labels(code or "error").inc()
        state.metrics.count(p.mode, str(status))
        yield b"data: " + error_body(status, message, code, param) + b"\n\n"
        done = True
    finally:
        if not done:  # the client went away mid-stream
            state.metrics.count(p.mode, "disconnected")
        state.metrics.in_flight.dec()
        await items.aclose()
