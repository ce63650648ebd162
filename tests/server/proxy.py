"""The proxy under test: a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from pluralism.server import ProxyConfig, ProxyState, create_app


class ProxyServer:
    def __init__(self, config: ProxyConfig, *, embedder: Any = None) -> None:
        self.state = ProxyState.from_config(config)
        self.app = create_app(embedder=embedder, state=self.state)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/v1"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, *, ready: bool = True, timeout_s: float = 120.0) -> ProxyServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.01)
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
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
