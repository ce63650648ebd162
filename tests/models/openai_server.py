"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, backed by the scripted model.

`plan` lists faults for the next requests, one per request ("500", "429", "hang", "slow",
"garbage", "nochoices", "echo-key"), so a test scripts an upstream's misbehaviour precisely.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pluralism.models import ScriptedChatModel
from pluralism.types import GenerationParams
from tests._loopback import LoopbackServer

_OPTION = re.compile(r"^([A-Z])\. (.*)$")


class FakeUpstream:
    def __init__(self, model: ScriptedChatModel | None = None) -> None:
        self.model = model or ScriptedChatModel(scores={"yes": 3.0, "no": 1.0})
        self.plan: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.logprobs = True
        self.hang_s = 3.0
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._http = LoopbackServer(app, timeout_graceful_shutdown=1)
        self.port = self._http.port
        self.base_url = f"{self._http.url}/v1"

    def start(self) -> FakeUpstream:
        self._http.start(what="fake upstream")
        return self

    def stop(self) -> None:
        self._http.stop()

    def reset(self) -> None:
        self.plan.clear()
        self.requests.clear()
        self.logprobs = True

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(
            {"body": body, "auth": request.headers.get("authorization"), "headers": request.headers}
        )
        fault = self.plan.pop(0) if self.plan else None
        if fault == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "429":
            return JSONResponse(
                {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "1"}
            )
        if fault == "retry-after-30":
            return JSONResponse(
                {"error": {"message": "busy"}}, status_code=503, headers={"Retry-After": "30"}
            )
        if fault == "trickle":  # a valid reply, one byte every 0.2 s: no read ever times out

            async def drip() -> AsyncIterator[bytes]:
                for byte in json.dumps(_completion("slow")).encode():
                    yield bytes([byte])
                    await asyncio.sleep(0.2)

            return StreamingResponse(drip(), media_type="application/json")
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        if fault == "slow":
            await asyncio.sleep(0.3)
        if fault == "garbage":
            return Response("<html>oops</html>", media_type="text/html")
        if fault == "nochoices":
            return JSONResponse({"id": "x", "object": "chat.completion"})
        if fault == "quote-key-late":  # the key straddles a 200-character quote's end
            auth = request.headers.get("authorization", "").removeprefix("Bearer ")
            message = f"{'x' * 180} key {auth} was refused"
            return JSONResponse({"error": {"message": message}}, status_code=401)
        if fault == "echo-key":
            auth = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"bad key {auth}"}}, status_code=401)
        if body.get("logprobs"):
            return JSONResponse(self._letters(body))
        params = GenerationParams(
            max_tokens=body.get("max_tokens", 96),
            temperature=body.get("temperature", 0.0),
            top_p=body.get("top_p", 1.0),
            seed=body.get("seed"),
            stop=body.get("stop"),
        )
        text = self.model.generate([body["messages"]], params)[0]
        if body.get("stream"):
            return StreamingResponse(_sse(text), media_type="text/event-stream")
        return JSONResponse(_completion(text))

    def _letters(self, body: dict[str, Any]) -> dict[str, Any]:
        """Letter logprobs from the scripted model's option weights, as a server would send."""
        user = body["messages"][-1]["content"]
        shown = [m.groups() for line in user.splitlines() if (m := _OPTION.match(line))]
        letters = [letter for letter, _ in shown]
        probs = self.model.score_batch(["q"], [option for _, option in shown])[0]
        best = letters[max(range(len(probs)), key=probs.__getitem__)]
        out = _completion(best)
        if self.logprobs:
            # Alternate "A" / " A" spellings: real tokenizers produce both.
            top = [
                {"token": (" " if i % 2 else "") + letter, "logprob": math.log(p)}
                for i, (letter, p) in enumerate(zip(letters, probs, strict=True))
                if p > 0
            ]
            top.append({"token": "The", "logprob": math.log(1e-3)})
            entry = {"token": best, "logprob": top[0]["logprob"], "top_logprobs": top}
            out["choices"][0]["logprobs"] = {"content": [entry]}
        return out


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


async def _sse(text: str) -> AsyncIterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else f" {word}"
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def closed_port() -> int:
    """A port nothing listens on, for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
