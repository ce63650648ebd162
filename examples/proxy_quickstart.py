"""The proxy end to end on one machine: a stand-in chatbot, `pluralism serve` in front of it,
and an unchanged OpenAI client.

python examples/proxy_quickstart.py

The stand-in chatbot is the bundled SmolLM2 behind a minimal OpenAI-compatible server (in
production it is your vLLM, llama.cpp, Ollama or hosted endpoint). Community drafts run on the
embedded model too, so the first answers take some seconds on a laptop CPU.
"""

import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn
from openai import OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pluralism import GenerationParams, LocalChatModel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# 1. The chatbot being wrapped: any OpenAI-compatible server.
model = LocalChatModel()


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    params = GenerationParams(max_tokens=body.get("max_tokens") or 64)
    text = model.generate([body["messages"]], params)[0]
    message = {"role": "assistant", "content": text}
    return JSONResponse(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "smol",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    )


bot_port, proxy_port = free_port(), free_port()
bot = uvicorn.Server(
    uvicorn.Config(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
        port=bot_port,
        log_level="warning",
    )
)
threading.Thread(target=bot.run, daemon=True).start()

# 2. pluralism in front of it (what an operator runs).
proxy = subprocess.Popen(
    [
        sys.executable,
        "-m",
        "pluralism",
        "serve",
        "--port",
        str(proxy_port),
        "--upstream",
        f"http://127.0.0.1:{bot_port}/v1",
        "--upstream-model",
        "smol",
        "--log-level",
        "warning",
    ]
)
try:
    while True:  # models load in the background; /readyz says when they are done
        try:
            if httpx.get(f"http://127.0.0.1:{proxy_port}/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)

    # 3. The client: unchanged but for its base URL.
    client = OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="unused")
    for mode in ("rules", "overton"):
        reply = client.chat.completions.create(
            model=f"pluralism/{mode}",
            messages=[{"role": "user", "content": "Is it rude to arrive late to a dinner party?"}],
            max_tokens=32,
        )
        extra = reply.model_extra["pluralism"]
        print(f"\n{mode.upper()}: {reply.choices[0].message.content}")
        print("  perspectives:", [p["community"] for p in extra["perspectives"]])
        print("  rules:", extra["rules"], "| overhead (ms):", extra["timings"]["overhead"])
finally:
    proxy.terminate()
    proxy.wait(timeout=30)
    bot.should_exit = True
