"""The proxy under test: a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import time
from typing import Any

import httpx

from pluralism.server import ProxyConfig, ProxyState, create_app
from tests._loopback import LoopbackServer


class ProxyServer:
    def __init__(self, config: ProxyConfig, *, embedder: Any = None) -> None:
        self.state = ProxyState.from_config(config)
        self.app = create_app(embedder=embedder, state=self.state)
        # The proxy's own lifespan loads its models, so it runs (unlike the test upstreams').
        self._http = LoopbackServer(
            self.app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=2
        )
        self.port: int = self._http.port
        self.url = self._http.url
        self.base_url = f"{self.url}/v1"

    def start(self, *, ready: bool = True, timeout_s: float = 120.0) -> ProxyServer:
        deadline = time.monotonic() + timeout_s
        self._http.start(timeout_s=timeout_s, what="the proxy")
        while ready:
            r = httpx.get(f"{self.url}/readyz", timeout=5)
            if r.status_code == 200:
                break
            if self.state.load_error:
                raise RuntimeError(self.state.load_error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy never became ready: {r.text}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._http.stop(timeout_s=10)


def wait_all_ready(url: str, *, in_a_row: int, timeout_s: float = 300.0, alive: Any = None) -> None:
    """Wait until `/readyz` says ready `in_a_row` times running: with several worker
    processes, whichever accepts answers, and each loads its models on its own.
    `alive()` returning False (the server process died) stops the wait at once."""
    deadline = time.monotonic() + timeout_s
    ready = 0
    while ready < in_a_row:
        if alive is not None and not alive():
            raise RuntimeError(f"the server at {url} exited before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} did not become ready in {timeout_s:g} s")
        try:
            ok = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        ready = ready + 1 if ok else 0
        time.sleep(0.2)
