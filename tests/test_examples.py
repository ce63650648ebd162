"""Every example in examples/ runs as a user would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# proxy_client.py talks to a running proxy, so it gets one (below) instead of running alone.
STANDALONE = sorted(p.name for p in (ROOT / "examples").glob("*.py") if p.name != "proxy_client.py")

pytestmark = pytest.mark.integration


def run_example(name: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("name", STANDALONE)
def test_example_runs(name: str) -> None:
    proc = run_example(name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()


def test_custom_pool_example_uses_its_own_communities() -> None:
    proc = run_example("custom_pool.py")
    assert "communities: ['city-workers', 'farmers']" in proc.stdout
    assert "steered to: farmers" in proc.stdout


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """`pluralism serve` on the shipped defaults, as the example's docstring says to start it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluralism", "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pluralism serve exited: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("pluralism serve never became ready")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_proxy_client_example_against_a_running_proxy(served: str) -> None:
    proc = run_example("proxy_client.py", {"PLURALISM_URL": served})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OVERTON:" in proc.stdout
