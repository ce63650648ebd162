"""Real OpenAI-compatible HTTP upstreams on 127.0.0.1 for the proxy tests and the benchmark.

`instant_app` answers at once with an echo of the last user message (for overhead and fault
tests); `model_app` wraps any `ChatModel` (the integration test serves the real SmolLM2).
An entry of `plan` makes the next request misbehave: "500", "hang", "garbage", "echo-key",
"quote-key-late" (the key where a 200-character quote ends), "slow-stream" (a pause before every
streamed piece).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests._loopback import LoopbackServer

Answer = Callable[[list[dict[str, Any]], dict[str, Any]], str]


def echo(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    return f"echo: {last.get('content', '')}"


class Upstream:
    """A tiny OpenAI-compatible server; `requests` records every body it was sent."""

    def __init__(self, answer: Answer = echo, *, blocking: bool = False) -> None:
        self.answer = answer
        self.blocking = blocking
        self.plan: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.hang_s = 5.0
        routes = [Route("/v1/chat/completions", self._chat, methods=["POST"])]
        self.app = Starlette(routes=routes)
        self._http = LoopbackServer(self.app)
        self.port: int = self._http.port
        self.base_url = f"{self._http.url}/v1"

    def start(self) -> Upstream:
        self._http.start(what="the test upstream")
        return self

    def stop(self) -> None:
        self._http.stop()

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        fault = self.plan.pop(0) if self.plan else None
        if fault == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        if fault == "quote-key-late":  # the key straddles a 200-character quote's end
            auth = request.headers.get("authorization", "").removeprefix("Bearer ")
            message = f"{'x' * 180} key {auth} was refused"
            return JSONResponse({"error": {"message": message}}, status_code=401)
        if fault == "echo-key":  # a careless upstream that quotes the key back
            auth = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"bad key {auth}"}}, status_code=401)
        if fault == "garbage":
            return Response("<html>not json</html>", media_type="application/json")
        if self.blocking:
            text = await asyncio.to_thread(self.answer, body["messages"], body)
        else:
            text = self.answer(body["messages"], body)
        tool = _tool_call(body)
        if body.get("stream"):
            pause = 0.2 if fault == "slow-stream" else 0.0
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_sse(text, pause, tool, usage), media_type="text/event-stream")
        reply = completion(text, body.get("model", "upstream"))
        if tool is not None:
            choice = reply["choices"][0]
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": [tool]}
            choice["finish_reason"] = "tool_calls"
        return JSONResponse(reply)


def completion(text: str, model: str = "upstream") -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": len(text.split()), "total_tokens": 0},
        "system_fingerprint": "fp-upstream",
    }


async def _sse(
    text: str, pause: float = 0.0, tool: dict[str, Any] | None = None, usage: bool = False
) -> AsyncIterator[str]:
    """Chunks as OpenAI sends them: the role, the pieces (or a tool call), the finish reason,
    then usage when asked for."""

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({'id': 'chatcmpl-up', 'choices': [choice]})}\n\n"

    yield event({"role": "assistant", "content": ""})
    if tool is not None:
        yield event({"tool_calls": [{"index": 0, **tool}]})
    else:
        for i, word in enumerate(text.split(" ")):
            if pause:
                await asyncio.sleep(pause)
            yield event({"content": word if i == 0 else f" {word}"})
    yield event({}, "tool_calls" if tool is not None else "stop")
    if usage:
        data = {"id": "chatcmpl-up", "choices": [], "usage": {"total_tokens": 5}}
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """A call of the first tool offered, as a tool-using chatbot would answer."""
    tools = body.get("tools") or []
    if not tools:
        return None
    name = tools[0]["function"]["name"]
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
