"""Proxy benchmarks: pass-through overhead next to the bare upstream, and a bounded load run.

Run from the project root:

    python bench/bench_proxy.py                 # both parts (about a minute on 2 cores)
    python bench/bench_proxy.py --only overhead --requests 4000

1. Overhead: `rules` mode with no rules against an upstream that answers at once. The same
   load (concurrency 32) goes to the upstream directly and through the proxy, alternating
   rounds in one run; the difference of the latency percentiles is what the proxy adds.
   Measured with 1 and with 2 proxy worker processes (`--workers 1,2`): at concurrency 32
   one process is CPU-bound, so its added latency is mostly queueing.
2. Load: 500 Overton requests at concurrency 50, communities on the scripted backend (the
   routing embedder is the real MiniLM), against the same instant upstream; counts errors and
   the proxy's resident memory at request 100 and at request 500.

The servers run in subprocesses, so the load generator does not share their GIL (it does
share the machine's cores, as a sidecar proxy would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.proxy import wait_all_ready  # noqa: E402

PROMPTS = [
    "Should I tip at restaurants in {}?",
    "Is it rude to arrive late to a dinner party in {}?",
    "How should families care for elderly parents in {}?",
    "Is it acceptable to eat with your hands in {}?",
    "Should taxes on the rich be raised in {}?",
]
PLACES = [
    "Japan",
    "Kenya",
    "Brazil",
    "France",
    "Fiji",
    "Canada",
    "India",
    "Poland",
    "Peru",
    "Egypt",
    "Norway",
    "Chile",
    "Vietnam",
    "Ghana",
    "Mexico",
    "Spain",
    "Iran",
    "Samoa",
    "Italy",
    "Korea",
    "Chad",
    "Cuba",
    "Laos",
    "Oman",
    "Nepal",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def serve_upstream(port: int) -> None:
    """The instant upstream (run in a subprocess by `--serve-upstream`)."""
    import uvicorn

    from tests.server.upstream import Upstream

    uvicorn.run(
        Upstream().app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        loop="auto",
        http="auto",
    )


def wait_ready(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(model: str, i: int) -> dict[str, Any]:
    prompt = PROMPTS[i % len(PROMPTS)].format(PLACES[(i // len(PROMPTS)) % len(PLACES)])
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}


class RawClient:
    """Keep-alive HTTP/1.1 over asyncio streams, one connection per worker.

    The load generator shares the 2 cores with both servers, so its own cost per request
    shows up in every figure: httpx's default client costs ~1 ms of CPU per request and
    caps the direct upstream at ~250 requests/s at concurrency 32 (it serves ~6,000), which
    would measure httpx rather than the proxy. `--client httpx` uses it anyway.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        data = json.dumps(payload).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        return int(status_line.split()[1]), headers, body

    async def aclose(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


async def load(
    url: str, model: str, n: int, concurrency: int, *, on_done: Any = None, client: str = "raw"
) -> dict[str, Any]:
    """`n` requests with `concurrency` in flight; latencies in ms and the proxy's own header."""
    latencies: list[float] = []
    overheads: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))
    parsed = httpx.URL(url)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as shared:

        async def worker() -> None:
            raw = RawClient(parsed.port or 80)
            try:
                for i in counter:
                    t0 = time.perf_counter()
                    headers: Any = {}
                    try:
                        if client == "raw":
                            status, headers, text = await raw.post(parsed.path, body(model, i))
                        else:
                            r = await shared.post(url, json=body(model, i))
                            status, headers, text = r.status_code, r.headers, r.content
                        if status != 200:
                            errors.append(f"{status} {text[:200]!r}")
                    except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
                        status = 0
                        errors.append(repr(exc))
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if status == 200 and "x-pluralism-overhead-ms" in headers:
                        overheads.append(float(headers["x-pluralism-overhead-ms"]))
                    if on_done is not None:
                        on_done(len(latencies))
            finally:
                await raw.aclose()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"lat": latencies, "overhead": overheads, "errors": errors, "rps": n / wall}


async def open_loop(url: str, model: str, rate: float, seconds: float) -> dict[str, Any]:
    """Requests sent on a fixed schedule (`rate` per second), whatever the replies do.

    Latency counts from each request's scheduled time, so a server that falls behind is
    charged for the queue it builds (no coordinated omission). At a rate both targets can
    sustain, the difference is the proxy's added latency rather than its throughput limit.
    """
    port = httpx.URL(url).port or 80
    path = httpx.URL(url).path
    idle: list[RawClient] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def one(i: int, due: float) -> None:
        await asyncio.sleep(max(due - time.perf_counter(), 0))
        conn = idle.pop() if idle else RawClient(port)
        try:
            status, _, text = await conn.post(path, body(model, i))
            if status != 200:
                errors.append(f"{status} {text[:200]!r}")
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
            await conn.aclose()
        latencies.append((time.perf_counter() - due) * 1000)

    start = time.perf_counter() + 0.05
    n = int(rate * seconds)
    await asyncio.gather(*(one(i, start + i / rate) for i in range(n)))
    for conn in idle:
        await conn.aclose()
    return {"lat": latencies, "errors": errors}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def scripted_pool(target: Path) -> Path:
    """The shipped communities with their models switched to the scripted backend."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "communities").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        data["model"] = {"backend": "scripted"}
        (target / path.name).write_text(yaml.safe_dump(data))
    return target


def start_proxy(
    tmp: Path, upstream: str, port: int, policies: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    config = {
        "workers": workers,
        "port": port,
        "upstream": upstream,
        "upstream_model": "instant",
        "upstream_max_retries": 0,
        "communities": str(scripted_pool(tmp / "communities")),
        "policies": str(policies),
        "log_level": "warning",
    }
    (tmp / "pluralism.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "pluralism", "serve", "--config", str(tmp / "pluralism.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def overhead_part(args: argparse.Namespace, up_url: str, px_url: str, workers: int) -> None:
    rounds = 2
    n = args.requests // rounds
    direct: dict[str, list[float]] = {"lat": [], "rps": []}
    proxied: dict[str, list[float]] = {"lat": [], "rps": [], "overhead": []}
    errors = 0
    for url, model in ((up_url, "instant"), (px_url, "pluralism/rules")):  # warm-up
        asyncio.run(
            load(f"{url}/v1/chat/completions", model, 300, args.concurrency, client=args.client)
        )
    for _ in range(rounds):
        d = asyncio.run(
            load(
                f"{up_url}/v1/chat/completions", "instant", n, args.concurrency, client=args.client
            )
        )
        p = asyncio.run(
            load(
                f"{px_url}/v1/chat/completions",
                "pluralism/rules",
                n,
                args.concurrency,
                client=args.client,
            )
        )
        errors += len(d["errors"]) + len(p["errors"])
        direct["lat"] += d["lat"]
        direct["rps"].append(d["rps"])
        proxied["lat"] += p["lat"]
        proxied["rps"].append(p["rps"])
        proxied["overhead"] += p["overhead"]
    rate = args.rate
    open_d = asyncio.run(open_loop(f"{up_url}/v1/chat/completions", "instant", rate, 5))
    open_p = asyncio.run(open_loop(f"{px_url}/v1/chat/completions", "pluralism/rules", rate, 5))
    errors += len(open_d["errors"]) + len(open_p["errors"])
    one_d = asyncio.run(
        load(f"{up_url}/v1/chat/completions", "instant", 500, 1, client=args.client)
    )
    one_p = asyncio.run(
        load(f"{px_url}/v1/chat/completions", "pluralism/rules", 500, 1, client=args.client)
    )
    print(
        f"\n## Pass-through overhead: rules mode, no rules, instant upstream "
        f"({args.requests} requests each, concurrency {args.concurrency}, {rounds} rounds, "
        f"{os.cpu_count()} cores, {args.client} client, proxy workers: {workers})\n"
    )
    print(
        f"| {'':34} | {'upstream direct':>15} | {'through proxy':>13} | {'added':>8} | "
        f"{'ratio':>6} |"
    )
    print(f"|{'-' * 36}|{'-' * 17}|{'-' * 15}|{'-' * 10}|{'-' * 8}|")
    for name, q in (("p50 latency (ms)", 50), ("p99 latency (ms)", 99)):
        a, b = pct(direct["lat"], q), pct(proxied["lat"], q)
        print(f"| {name:34} | {a:15.2f} | {b:13.2f} | {b - a:8.2f} | {b / a:6.2f} |")
    a, b = statistics.mean(direct["rps"]), statistics.mean(proxied["rps"])
    print(f"| {'requests/s':34} | {a:15.0f} | {b:13.0f} | {b - a:8.0f} | {b / a:6.2f} |")
    a, b = pct(one_d["lat"], 50), pct(one_p["lat"], 50)
    print(
        f"| {'p50 at concurrency 1 (ms)':34} | {a:15.2f} | {b:13.2f} | {b - a:8.2f} | "
        f"{b / a:6.2f} |"
    )
    for name, q in (
        (f"p50 at {rate:g} req/s open loop (ms)", 50),
        (f"p99 at {rate:g} req/s open loop (ms)", 99),
    ):
        a, b = pct(open_d["lat"], q), pct(open_p["lat"], q)
        print(f"| {name:34} | {a:15.2f} | {b:13.2f} | {b - a:8.2f} | {b / a:6.2f} |")
    oh = proxied["overhead"]
    print(
        f"| {'x-pluralism-overhead-ms p50/p99':34} | {'':15} | "
        f"{pct(oh, 50):6.2f}/{pct(oh, 99):6.2f} | {'':8} | {'':6} |"
    )
    print(f"\nerrors: {errors}")


def load_part(px_url: str, pid: int, client: str) -> None:
    marks: dict[int, float] = {}

    def on_done(count: int) -> None:
        if count in (100, 500):
            marks[count] = rss_mb(pid)

    before = rss_mb(pid)
    result = asyncio.run(
        load(
            f"{px_url}/v1/chat/completions",
            "pluralism/overton",
            500,
            50,
            on_done=on_done,
            client=client,
        )
    )
    lat = result["lat"]
    print(
        "\n## Bounded load: 500 Overton requests, concurrency 50, scripted communities, "
        "instant upstream\n"
    )
    print(f"| {'':30} | {'value':>10} |")
    print(f"|{'-' * 32}|{'-' * 12}|")
    print(f"| {'errors':30} | {len(result['errors']):10d} |")
    print(f"| {'requests/s':30} | {result['rps']:10.1f} |")
    print(f"| {'p50 / p99 latency (ms)':30} | {pct(lat, 50):4.0f}/{pct(lat, 99):5.0f} |")
    print(f"| {'overhead header p50 (ms)':30} | {pct(result['overhead'], 50):10.2f} |")
    print(f"| {'RSS before (MB)':30} | {before:10.1f} |")
    print(f"| {'RSS at request 100 (MB)':30} | {marks.get(100, float('nan')):10.1f} |")
    print(f"| {'RSS at request 500 (MB)':30} | {marks.get(500, float('nan')):10.1f} |")
    growth = marks.get(500, float("nan")) / marks.get(100, float("nan"))
    print(f"| {'RSS ratio 500/100':30} | {growth:10.3f} |")
    if result["errors"]:
        print("first errors:", result["errors"][:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["overhead", "load"])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="requests/s of the open-loop rows"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: lean keep-alive sockets, or httpx (see RawClient)",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="proxy worker processes to measure the overhead with, comma-separated",
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(up_port)], cwd=ROOT
    )
    up_url = f"http://127.0.0.1:{up_port}"
    (tmp / "policies").mkdir()  # no rules: pure pass-through
    try:
        wait_ready(f"{up_url}/v1/chat/completions")
        counts = [int(w) for w in args.workers.split(",")] if args.only != "load" else [1]
        for workers in counts:
            px_port = free_port()
            proxy = start_proxy(tmp, f"{up_url}/v1", px_port, tmp / "policies", workers=workers)
            px_url = f"http://127.0.0.1:{px_port}"
            try:
                wait_all_ready(px_url, in_a_row=3 * workers)
                if args.only in (None, "overhead"):
                    overhead_part(args, up_url, px_url, workers)
                if args.only in (None, "load") and workers == 1:
                    load_part(px_url, proxy.pid, args.client)
            finally:
                stop(proxy)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    main()
