"""Proxy benchmarks: pass-through overhead next to the bare upstream, and a bounded load run.

Run from the project root:

    python bench/bench_proxy.py                 # both parts (about a minute on 2 cores)
    python bench/bench_proxy.py --only overhead --requests 4000

1. Overhead: `rules` mode with no rules against an upstream that answers at once. The same
   load (concurrency 32) goes to the upstream directly and through the proxy, alternating
   rounds in one run; the difference of the latency percentiles is what the proxy adds.
2. Load: 500 Overton requests at concurrency 50, communities on the scripted backend (the
   routing embedder is the real MiniLM), against the same instant upstream; counts errors and
   the proxy's resident memory at request 100 and at request 500.

The servers run in subprocesses, so the load generator does not share their GIL (it does
share the machine's cores, as a sidecar proxy would).
"""

from __future__ import annotations

import argparse
import asyncio
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

PROMPTS = [
    "Should I tip at restaurants in {}?",
    "Is it rude to arrive late to a dinner party in {}?",
    "How should families care for elderly parents in {}?",
    "Is it acceptable to eat with your hands in {}?",
    "Should taxes on the rich be raised in {}?",
]
PLACES = ["Japan", "Kenya", "Brazil", "France", "Fiji", "Canada", "India", "Poland", "Peru",
          "Egypt", "Norway", "Chile", "Vietnam", "Ghana", "Mexico", "Spain", "Iran", "Samoa",
          "Italy", "Korea", "Chad", "Cuba", "Laos", "Oman", "Nepal"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def serve_upstream(port: int) -> None:
    """The instant upstream (run in a subprocess by `--serve-upstream`)."""
    import uvicorn

    from tests.server.upstream import Upstream

    uvicorn.run(Upstream().app, host="127.0.0.1", port=port, log_level="error",
                access_log=False, loop="auto", http="auto")


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


async def load(
    url: str, model: str, n: int, concurrency: int, *, on_done: Any = None
) -> dict[str, Any]:
    """`n` requests with `concurrency` in flight; latencies in ms and the proxy's own header."""
    latencies: list[float] = []
    overheads: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=body(model, i))
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    errors.append(repr(exc))
                latencies.append((time.perf_counter() - t0) * 1000)
                if ok and "x-pluralism-overhead-ms" in r.headers:
                    overheads.append(float(r.headers["x-pluralism-overhead-ms"]))
                if on_done is not None:
                    on_done(len(latencies))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"lat": latencies, "overhead": overheads, "errors": errors, "rps": n / wall}


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


def start_proxy(tmp: Path, upstream: str, port: int, policies: Path) -> subprocess.Popen[bytes]:
    config = {
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


def overhead_part(args: argparse.Namespace, up_url: str, px_url: str) -> None:
    rounds = 2
    n = args.requests // rounds
    direct: dict[str, list[float]] = {"lat": [], "rps": []}
    proxied: dict[str, list[float]] = {"lat": [], "rps": [], "overhead": []}
    errors = 0
    for url, model in ((up_url, "instant"), (px_url, "pluralism/rules")):  # warm-up
        asyncio.run(load(f"{url}/v1/chat/completions", model, 300, args.concurrency))
    for _ in range(rounds):
        d = asyncio.run(load(f"{up_url}/v1/chat/completions", "instant", n, args.concurrency))
        p = asyncio.run(load(f"{px_url}/v1/chat/completions", "pluralism/rules", n,
                             args.concurrency))
        errors += len(d["errors"]) + len(p["errors"])
        direct["lat"] += d["lat"]
        direct["rps"].append(d["rps"])
        proxied["lat"] += p["lat"]
        proxied["rps"].append(p["rps"])
        proxied["overhead"] += p["overhead"]
    one_d = asyncio.run(load(f"{up_url}/v1/chat/completions", "instant", 300, 1))
    one_p = asyncio.run(load(f"{px_url}/v1/chat/completions", "pluralism/rules", 300, 1))
    print(f"\n## Pass-through overhead: rules mode, no rules, instant upstream "
          f"({args.requests} requests each, concurrency {args.concurrency}, {rounds} rounds, "
          f"{os.cpu_count()} cores)\n")
    print(f"| {'':28} | {'upstream direct':>15} | {'through proxy':>13} | {'added':>8} | "
          f"{'ratio':>6} |")
    print(f"|{'-' * 30}|{'-' * 17}|{'-' * 15}|{'-' * 10}|{'-' * 8}|")
    for name, q in (("p50 latency (ms)", 50), ("p99 latency (ms)", 99)):
        a, b = pct(direct["lat"], q), pct(proxied["lat"], q)
        print(f"| {name:28} | {a:15.2f} | {b:13.2f} | {b - a:8.2f} | {b / a:6.2f} |")
    a, b = statistics.mean(direct["rps"]), statistics.mean(proxied["rps"])
    print(f"| {'requests/s':28} | {a:15.0f} | {b:13.0f} | {b - a:8.0f} | {b / a:6.2f} |")
    a, b = pct(one_d["lat"], 50), pct(one_p["lat"], 50)
    print(f"| {'p50 at concurrency 1 (ms)':28} | {a:15.2f} | {b:13.2f} | {b - a:8.2f} | "
          f"{b / a:6.2f} |")
    oh = proxied["overhead"]
    print(f"| {'x-pluralism-overhead-ms p50/p99':28} | {'':15} | "
          f"{pct(oh, 50):6.2f}/{pct(oh, 99):6.2f} | {'':8} | {'':6} |")
    print(f"\nerrors: {errors}")


def load_part(px_url: str, pid: int) -> None:
    marks: dict[int, float] = {}

    def on_done(count: int) -> None:
        if count in (100, 500):
            marks[count] = rss_mb(pid)

    before = rss_mb(pid)
    result = asyncio.run(
        load(f"{px_url}/v1/chat/completions", "pluralism/overton", 500, 50, on_done=on_done)
    )
    lat = result["lat"]
    print("\n## Bounded load: 500 Overton requests, concurrency 50, scripted communities, "
          "instant upstream\n")
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
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    up_port, px_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", str(up_port)], cwd=ROOT
        ))
        (tmp / "policies").mkdir()  # no rules: pure pass-through
        proxy = start_proxy(tmp, f"http://127.0.0.1:{up_port}/v1", px_port, tmp / "policies")
        procs.append(proxy)
        up_url, px_url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{px_port}"
        wait_ready(f"{up_url}/v1/chat/completions")
        wait_ready(f"{px_url}/readyz")
        while httpx.get(f"{px_url}/readyz").status_code != 200:
            time.sleep(0.2)
        if args.only in (None, "overhead"):
            overhead_part(args, up_url, px_url)
        if args.only in (None, "load"):
            load_part(px_url, proxy.pid)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
