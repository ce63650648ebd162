"""The proxy on the embedded models under more load than it can answer, and after clients leave.

    python bench/bench_overload.py [--clients 32] [--seconds 60] [--cancelled 100]

Starts `pluralism serve` (no upstream: every answer runs on the bundled models) and, side by
side, runs the same load against:

- the default `max_model_requests` (one per core): beyond it, a 503 `busy` with Retry-After
  at once;
- `max_model_requests: 10000`: no admission control, everything queues (how it was before);
- any other limits given with `--limits`.

Load: `--clients` threads, each sending default-mode (Overton) requests with a 30 s client
timeout for `--seconds`. Printed per run: answered (200), refused at once (503) and given up
(the client's timeout), the slowest answer and refusal, and how long the server's CPU took to go
idle (under 5% of a core over a second) after the last client stopped.

Then, on the default config: the server's memory (RSS) before and after `--cancelled` long
requests whose clients give up after 1 s (each cancels its generation). Not a test: figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BODY = {
    "model": "pluralism",
    "messages": [{"role": "user", "content": "Is it rude to arrive late to a dinner party?"}],
}
LONG = {
    "model": "pluralism/overton",
    "max_tokens": 2000,
    "messages": [{"role": "user", "content": "Write a long essay on tipping customs."}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, max_model_requests: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = Path(tempfile.mkdtemp()) / "pluralism.yaml"
        limit = f"max_model_requests: {max_model_requests}\n" if max_model_requests else ""
        config.write_text(f"port: {self.port}\nlog_level: error\n{limit}", encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pluralism", "serve", "--config", str(config)], env=env
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def load(server: Server, clients: int, seconds: float) -> dict[str, float]:
    stop = time.monotonic() + seconds
    counts = {"answered": 0, "refused": 0, "gave up": 0, "other": 0}
    slowest = {"answered": 0.0, "refused": 0.0}
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                started = time.monotonic()
                try:
                    r = http.post(f"{server.url}/v1/chat/completions", json=BODY)
                    kind = {200: "answered", 503: "refused"}.get(r.status_code, "other")
                except httpx.TimeoutException:
                    kind = "gave up"
                took = time.monotonic() - started
                if kind == "refused":  # as a well-behaved client does
                    time.sleep(float(r.headers.get("retry-after", "1")))
                with lock:
                    counts[kind] += 1
                    if kind in slowest:
                        slowest[kind] = max(slowest[kind], took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = time.monotonic()
    while True:
        before = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        if cpu_seconds(server.proc.pid) - before < 0.05 or time.monotonic() - left > 600:
            break
    return {
        **counts,
        **{f"slowest {k}": v for k, v in slowest.items()},
        "idle after": time.monotonic() - left,
    }


def cancelled(server: Server, n: int) -> tuple[float, float]:
    with httpx.Client(timeout=1.0) as http:
        http.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=60)  # warm
        before = rss_mb(server.proc.pid)
        for _ in range(n):
            with contextlib.suppress(httpx.TimeoutException):
                http.post(f"{server.url}/v1/chat/completions", json=LONG)
    time.sleep(2.0)
    return before, rss_mb(server.proc.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--cancelled", type=int, default=100)
    ap.add_argument(
        "--limits", type=int, nargs="+", default=[0, 10000], help="0: the default (per core)"
    )
    args = ap.parse_args()
    rows = {}
    for limit in args.limits:
        label = "default" if limit == 0 else "no limit (before)" if limit >= 10000 else str(limit)
        server = Server(limit)
        try:
            rows[label] = load(server, args.clients, args.seconds)
        finally:
            server.stop()
    keys = list(next(iter(rows.values())))
    print(f"{args.clients} clients for {args.seconds:g} s, default mode, 30 s client timeout\n")
    print(f"{'':<24}" + "".join(f"{label:>24}" for label in rows))
    for key in keys:
        unit = " s" if key.startswith(("slowest", "idle")) else ""
        print(f"{key:<24}" + "".join(f"{row[key]:>22.1f}{unit or '  '}" for row in rows.values()))
    if args.cancelled:
        server = Server(0)
        try:
            before, after = cancelled(server, args.cancelled)
        finally:
            server.stop()
        print(
            f"\nRSS before / after {args.cancelled} cancelled long generations: "
            f"{before:.0f} MB / {after:.0f} MB ({after / before:.2f}x)"
        )


if __name__ == "__main__":
    main()
