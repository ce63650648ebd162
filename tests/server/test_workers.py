"""`pluralism serve --workers 2`: a real multi-process server, as an operator starts it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from .conftest import RULES
from .proxy import wait_all_ready
from .upstream import Upstream, free_port

pytestmark = pytest.mark.integration

TIP_V2 = RULES.replace("tipping-local-custom", "tipping-v2")


@pytest.fixture()
def served(
    tmp_path: Path, upstream_server: Upstream, communities_dir: Path
) -> Iterator[tuple[str, Path]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tipping.yaml").write_text(RULES, encoding="utf-8")
    port = free_port()
    config = {
        "port": port,
        "upstream": upstream_server.base_url,
        "upstream_model": "chatbot",
        "communities": str(communities_dir),
        "policies": str(policies),
        "workers": 2,
        "log_level": "warning",
    }
    (tmp_path / "pluralism.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluralism", "serve", "--config", str(tmp_path / "pluralism.yaml")],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_all_ready(url, in_a_row=6, timeout_s=240, alive=lambda: proc.poll() is None)
        yield url, policies
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _rules(client: openai.OpenAI) -> list[str]:
    reply = client.chat.completions.create(
        model="pluralism/rules",
        messages=[{"role": "user", "content": "Should I tip at restaurants?"}],
    )
    found: list[str] = reply.model_extra["pluralism"]["rules"]  # type: ignore[index]
    return found


def test_two_workers_answer_count_together_and_reload_together(
    served: tuple[str, Path],
) -> None:
    url, policies = served
    with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _rules(client), range(40)))
        assert answers == [["tipping-local-custom"]] * 40
        metrics = httpx.get(f"{url}/metrics").text
        counted = re.search(r'pluralism_requests_total\{mode="rules",status="200"\} (\S+)', metrics)
        assert counted is not None and float(counted.group(1)) == 40.0

        (policies / "tipping.yaml").write_text(TIP_V2, encoding="utf-8")
        deadline = time.monotonic() + 20
        # Every worker swaps: once the new rule is seen, 20 answers in a row show it.
        while True:
            with ThreadPoolExecutor(8) as pool:
                seen = list(pool.map(lambda _: _rules(client), range(20)))
            if all(s == ["tipping-v2"] for s in seen):
                break
            assert time.monotonic() < deadline, f"a worker kept the old rules: {seen}"
            time.sleep(0.2)
    audit = (
        (policies.parent / f"{policies.name}.audit.jsonl").read_text(encoding="utf-8").splitlines()
    )
    assert sum('"tipping-v2"' in line for line in audit) == 1, audit


def test_connections_beyond_max_connections_are_turned_away(
    tmp_path: Path, upstream_server: Upstream, communities_dir: Path
) -> None:
    """`max_connections` reaches the server: with 2 held open, a third is refused at once."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tipping.yaml").write_text(RULES, encoding="utf-8")
    port = free_port()
    config = {
        "port": port,
        "upstream": upstream_server.base_url,
        "upstream_model": "chatbot",
        "communities": str(communities_dir),
        "policies": str(policies),
        "max_connections": 2,
        "log_level": "warning",
    }
    (tmp_path / "pluralism.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluralism", "serve", "--config", str(tmp_path / "pluralism.yaml")],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        wait_all_ready(url, in_a_row=1, timeout_s=240, alive=lambda: proc.poll() is None)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(0.3)  # both accepted and counted
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 503
        for conn in held:
            conn.close()
        time.sleep(0.3)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        for conn in held:
            conn.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sigterm_cancels_what_outlives_the_grace_period_and_exits_within_it(
    tmp_path: Path, upstream_server: Upstream, communities_dir: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tipping.yaml").write_text(RULES, encoding="utf-8")
    port = free_port()
    config = {
        "port": port,
        "upstream": upstream_server.base_url,
        "upstream_model": "chatbot",
        "upstream_timeout_s": 30,
        "communities": str(communities_dir),
        "policies": str(policies),
        "shutdown_timeout_s": 1,
        "log_level": "warning",
    }
    (tmp_path / "pluralism.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluralism", "serve", "--config", str(tmp_path / "pluralism.yaml")],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    upstream_server.hang_s = 20.0
    try:
        wait_all_ready(url, in_a_row=1, timeout_s=240, alive=lambda: proc.poll() is None)
        upstream_server.plan.append("hang")  # the meta answer would take 20 s
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{url}/v1/chat/completions",
                json={
                    "model": "pluralism/overton",
                    "messages": [{"role": "user", "content": "Tip?"}],
                },
                timeout=30,
            )
            time.sleep(1.0)
            stopped = time.monotonic()
            proc.terminate()
            proc.wait(timeout=15)
            assert time.monotonic() - stopped < 5  # the 1 s grace period, not the 20 s answer
            reply = pending.result()
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "shutting_down"
    finally:
        upstream_server.hang_s = 5.0
        upstream_server.plan.clear()
        if proc.poll() is None:
            proc.kill()
