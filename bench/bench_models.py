"""The embedded chat model: llama.cpp (`local`) against the transformers backend and against bare
llama.cpp on the same GGUF, each figure next to its baselines in one run.

(a) tokens/s of one 64-token stream and of five concurrent 64-token drafts:
    local vs transformers vs bare xllamacpp (no pluralism code);
(b) one Overton answer end to end (3 drafts of 64 tokens + a 128-token meta answer, the
    library's real pipeline) and its time to the first streamed token: local vs transformers;
(c) distributional scoring, 5 communities x 4 options, all shifts: items/s, local vs
    transformers;
(d) the same one-stream and Overton figures with a CPU-bound neighbour process, as a share of
    the idle figure (llama.cpp's threads spin; a collapse would show here);
(e) cold `pluralism ask` (process start to answer) on the embedded defaults.

    python bench/bench_models.py [--threads N] [--repeats 3] [--skip-cold]

Every backend runs with the same thread count (default: 1, the honest figure on a shared
2-core machine; use --threads 2 on an idle one). The transformers baseline needs the train
extra. Not a test: timings depend on the machine, so nothing here gates CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pluralism.types import GenerationParams, Message

PERSONAS = [
    "You speak for rural farming communities in East Africa.",
    "You speak for young urban professionals in Western Europe.",
    "You speak for religious conservatives in the American South.",
    "You speak for Indigenous communities of Oceania.",
    "You speak for factory workers in Southeast Asia.",
]
QUESTION = "Is it rude to arrive late to a dinner party?"
OPTIONS = ["strongly agree", "agree", "disagree", "strongly disagree"]
TOKENS = 64


def conv(system: str, user: str) -> list[Message]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# A fixed number of tokens whatever the model would say: EOS is ignored where the backend
# allows it (bare llama.cpp); elsewhere tokens/s counts the tokens actually produced.
GEN = GenerationParams(max_tokens=TOKENS, repetition_penalty=1.0)


class Bare:
    """xllamacpp with no pluralism code around it: the wrapper's cost is the difference."""

    def __init__(self, threads: int) -> None:
        import xllamacpp as xlc

        from pluralism.models._gguf import bundled_gguf, fast_gguf

        p = xlc.CommonParams()
        # The weights the local backend runs: SmolLM2's Q4_1 as Q8_0 (see _gguf.fast_gguf).
        p.model.path = str(fast_gguf(bundled_gguf()))
        p.n_ctx = 8192
        p.kv_unified = True
        p.n_parallel = 8
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.verbosity = -1
        p.warmup = False
        self.server: Any = xlc.Server(p)

    def tokens(self, batch: list[list[Message]]) -> int:
        def one(c: list[Message]) -> int:
            body = {"messages": c, "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True}
            return int(self.server.handle_chat_completions(body)["usage"]["completion_tokens"])

        with ThreadPoolExecutor(len(batch)) as pool:
            return sum(pool.map(one, batch))


def throughput(model: Any, batch: list[list[Message]], repeats: int) -> dict[str, Any]:
    """`model.generate(batch)` timed: the texts (tokens counted later, by the parent process)
    or, bare, the tokens llama.cpp reports, and the median seconds."""
    if isinstance(model, Bare):
        produced: list[int] = []
        t = median(lambda: produced.append(model.tokens(batch)), repeats)
        return {"tokens": statistics.median(produced), "s": t}
    texts: list[str] = []

    def run() -> None:
        texts[:] = model.generate(batch, GEN)

    seconds = median(run, repeats)
    return {"texts": texts, "s": seconds}


def overton(plural: Any, repeats: int) -> tuple[float, float]:
    """(seconds to the full answer, seconds to its first streamed piece), medians."""

    async def once() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        async for piece in plural.astream(QUESTION, mode="overton"):
            if not first and isinstance(piece, str) and piece:
                first = time.perf_counter() - started
        return time.perf_counter() - started, first

    runs = [asyncio.run(once()) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def pluralism_with(model: Any) -> Any:
    from pluralism import Pluralism, Settings
    from pluralism.models import ModelPool
    from pluralism.types import ModelSpec

    pool = ModelPool()
    pool.register(ModelSpec(), model)
    settings = Settings(
        draft=GenerationParams(max_tokens=64), meta=GenerationParams(max_tokens=128), top_k=3
    )
    return Pluralism.default(models=pool, settings=settings)


def scoring(model: Any, repeats: int) -> float:
    prompts = [conv(p, "Should cities ban private cars from their centres?") for p in PERSONAS]
    return 1.0 / median(lambda: model.score_batch(prompts, OPTIONS), repeats)


class Neighbour:
    """A CPU-bound process beside the benchmark, as on a shared machine."""

    def __enter__(self) -> Neighbour:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def cold_ask(threads: int) -> float:
    env = {**os.environ, "PLURALISM_THREADS": str(threads)}
    exe = str(Path(sys.executable).with_name("pluralism"))
    cmd = [exe, "ask", QUESTION, "--mode", "overton", "--json"]
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # converts caches once
    started = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def measure(backend: str, n: int, r: int, neighbour: bool) -> dict[str, Any]:
    """One backend's figures, in this process only: torch's OpenMP pool and llama.cpp's threads
    slow each other down when they share a process (2 threads: 83 -> 37 tok/s), which no
    deployment does, so every backend is measured in a process of its own."""
    from pluralism.models import LocalChatModel, TransformersChatModel

    one = [conv(PERSONAS[0], QUESTION)]
    five = [conv(p, QUESTION) for p in PERSONAS]
    model: Any = (
        Bare(n)
        if backend == "bare"
        else LocalChatModel(threads=n)
        if backend == "local"
        else TransformersChatModel(threads=n)
    )
    out: dict[str, Any] = {}
    if backend == "bare":
        model.tokens(one)
    else:
        model.generate(one, GEN)  # warm up
    out["stream"] = throughput(model, one, r)
    out["drafts"] = throughput(model, five, r)
    if backend == "bare":
        return out
    plural = pluralism_with(model)
    overton(plural, 1)  # adapters registered, caches warm
    out["overton"], out["ttft"] = overton(plural, r)
    out["scoring"] = scoring(model, r)
    if neighbour:
        # Threads left to follow the free cores (the default): idle, then beside a neighbour.
        model.close()  # one engine at a time, as a deployment runs
        follow = LocalChatModel()
        plural = pluralism_with(follow)
        overton(plural, 1)
        time.sleep(2.5)  # the model looks at the free cores every 2 s
        follow.generate(one, GEN)
        out["follow_threads"] = follow.threads
        out["idle_stream"] = throughput(follow, one, r)
        out["idle_overton"], _ = overton(plural, r)
        with Neighbour():
            time.sleep(2.5)  # the model looks at the free cores every 2 s
            follow.generate(one, GEN)
            out["busy_stream"] = throughput(follow, one, r)
            out["busy_overton"], _ = overton(plural, r)
            out["busy_threads"] = follow.threads
    return out


def token_counter() -> Callable[[str], int]:
    """SmolLM2's own tokenizer, read from the GGUF: every backend's text is counted alike.
    Only the parent process loads it: transformers brings torch, whose OpenMP runtime slows
    llama.cpp in the same process (one Overton answer 8.3 s -> 12-13 s)."""
    from transformers import AutoTokenizer

    from pluralism.models._gguf import bundled_gguf

    gguf = bundled_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def rate(measured: dict[str, Any], count: Callable[[str], int]) -> float:
    """Tokens/s of one `throughput` result."""
    tokens = measured.get("tokens")
    if tokens is None:
        tokens = sum(count(text) for text in measured["texts"])
    return float(tokens) / float(measured["s"])


def worker(backend: str, n: int, r: int, neighbour: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", backend, "--threads", str(n), "--repeats", str(r)]
    if neighbour:
        cmd.append("--neighbour")
    env = {**os.environ, "OMP_NUM_THREADS": str(n), "HF_HUB_OFFLINE": "1"}
    env.pop("PLURALISM_THREADS", None)  # the neighbour figures let threads follow free cores
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--worker", choices=["local", "transformers", "bare"])
    parser.add_argument("--neighbour", action="store_true")
    args = parser.parse_args()
    n, r = args.threads, args.repeats
    if args.worker:
        print(json.dumps(measure(args.worker, n, r, args.neighbour)))
        return
    print(f"threads per backend: {n}; medians of {r}; cores {os.cpu_count()}; each backend in")
    print(f"a process of its own. Load average before: {os.getloadavg()[0]:.2f}\n")
    lo = worker("local", n, r, neighbour=True)
    tf = worker("transformers", n, r, neighbour=False)
    b = worker("bare", n, r, neighbour=False)
    count = token_counter()
    for result in (lo, tf, b):
        for key in ("stream", "drafts", "idle_stream", "busy_stream"):
            if key in result:
                result[key] = rate(result[key], count)
    print(
        f"{'(a) generation, tok/s':<28}{'local':>10}{'transformers':>14}{'bare':>10}"
        f"{'local/tf':>10}{'local/bare':>12}"
    )
    for key, label in (("stream", "1 stream of 64"), ("drafts", "5 drafts of 64")):
        print(
            f"{label:<28}{lo[key]:>10.1f}{tf[key]:>14.1f}{b[key]:>10.1f}"
            f"{lo[key] / tf[key]:>9.2f}x{lo[key] / b[key]:>11.2f}x"
        )
    print(f"\n{'(b) one Overton answer':<28}{'local':>10}{'transformers':>14}{'speed-up':>10}")
    for key, label in (("overton", "end to end, s"), ("ttft", "first streamed token, s")):
        print(f"{label:<28}{lo[key]:>10.2f}{tf[key]:>14.2f}{tf[key] / lo[key]:>9.2f}x")
    print(
        f"\n{'(c) distributional, items/s':<28}{lo['scoring']:>10.3f}{tf['scoring']:>14.3f}"
        f"{lo['scoring'] / tf['scoring']:>9.2f}x"
    )
    print(
        f"\n(d) local, threads following the free cores ({lo['follow_threads']:.0f} idle, "
        f"{lo['busy_threads']:.0f} beside the neighbour)"
    )
    print(f"{'':<34}{'idle':>8}{'busy':>8}{'busy/idle':>11}")
    print(
        f"{'1 stream, tok/s':<34}{lo['idle_stream']:>8.1f}{lo['busy_stream']:>8.1f}"
        f"{lo['busy_stream'] / lo['idle_stream']:>10.2f}x"
    )
    print(
        f"{'Overton answers/min':<34}{60 / lo['idle_overton']:>8.1f}"
        f"{60 / lo['busy_overton']:>8.1f}{lo['idle_overton'] / lo['busy_overton']:>10.2f}x"
    )
    if not args.skip_cold:
        cold = cold_ask(n)
        print(f"\n(e) cold `pluralism ask` (process start to Overton answer): {cold:.1f} s")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
