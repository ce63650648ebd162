"""Local model performance, each figure measured next to its baseline in the same run.

(a) load from the safetensors cache vs dequantising the GGUF;
(b) five community drafts in one batch vs one draft alone vs five drafts one after another;
(c) distributional scoring, five communities x four options: one padded forward pass
    (`score_batch`) vs one forward per community per ordering, in sequence.

    python bench/bench_models.py [--quick]

Not a test: timings depend on the machine, so nothing here gates CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pluralism.models import LocalChatModel
from pluralism.models._choices import choice_conversation, shifts
from pluralism.types import GenerationParams, Message

PERSONAS = [
    "You speak for rural farming communities in East Africa.",
    "You speak for young urban professionals in Western Europe.",
    "You speak for religious conservatives in the American South.",
    "You speak for Indigenous communities of Oceania.",
    "You speak for factory workers in Southeast Asia.",
]
QUESTIONS = [
    "Should the government limit how many hours people may work each week?",
    "Is it acceptable to eat meat?",
    "Should children be taught mainly by their parents or by schools?",
    "How much should people defer to their elders?",
    "Should cities ban private cars from their centres?",
]
OPTIONS = ["strongly agree", "agree", "disagree", "strongly disagree"]
RULES = "Rules you must follow:\n" + "\n".join(
    f"{i}. Respect the dignity, privacy and autonomy of every person; cite local norms where "
    f"they differ and never present one community's view as universal."
    for i in range(1, 9)
)


def conv(system: str, user: str) -> list[Message]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def drafts(model: LocalChatModel, batch: list[list[Message]], tokens: int) -> None:
    # min_new_tokens makes every row produce exactly `tokens`, so an early EOS in one
    # configuration cannot make it look faster than the other.
    p = GenerationParams(max_tokens=tokens)
    enc = model._encode([model._prompt_text(c) for c in batch])
    model._run_generate(enc, p, {"min_new_tokens": tokens})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and questions")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per draft")
    parser.add_argument("--cache-dir", help="cache root (default: a fresh temp dir)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    questions = QUESTIONS[:2] if args.quick else QUESTIONS

    rows = _Table()
    print(
        f"bench_models  torch threads={args.threads or 'default'}  load avg="
        f"{os.getloadavg()[0]:.2f}  cpus={os.cpu_count()}  quick={args.quick}  "
        f"python={sys.version.split()[0]}"
    )
    print(f"{'figure':<38} {'value':>10}   {'baseline':<30} {'value':>10} {'ratio':>8}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(args.cache_dir or tmp)
        # (a) The first load converts the GGUF into the cache; the timed loads reuse it.
        LocalChatModel(cache_dir=cache_dir, threads=args.threads)
        warm = min(LocalChatModel(cache_dir=cache_dir).load_seconds for _ in range(repeats))
        slow = LocalChatModel(from_gguf=True)
        assert slow.loaded_from == "gguf"
        rows.append(("load (safetensors cache)", warm, "GGUF dequantise", slow.load_seconds, "s"))
        del slow
        model = LocalChatModel(cache_dir=cache_dir)

    # (b) Five persona drafts.
    five = [conv(p, "What makes a community strong?") for p in PERSONAS]
    drafts(model, five[:1], 4)  # first call pays for lazy init; keep it out of the figures
    batch_s = median_time(lambda: drafts(model, five, args.tokens), repeats)
    one_s = median_time(lambda: drafts(model, five[:1], args.tokens), repeats)
    seq_s = median_time(lambda: [drafts(model, [c], args.tokens) for c in five], repeats)
    rows.append((f"5 drafts x {args.tokens} tok, one batch", batch_s, "1 draft alone", one_s, "s"))
    rows.append(
        (f"5 drafts x {args.tokens} tok, one batch", batch_s, "5 drafts in sequence", seq_s, "s")
    )
    rows.append(("5 drafts in sequence", seq_s, "1 draft alone", one_s, "s"))

    # (c) Distributional scoring: an item is one question put to all five communities. The
    # second pair gives each community a rules block in its system prompt, as the graph does,
    # where sharing the prompt prefix across the four orderings saves the most.
    orders = shifts(len(OPTIONS))

    def scoring(personas: list[str]) -> tuple[float, float]:
        def batched() -> None:
            for q in questions:
                model.score_batch([conv(p, q) for p in personas], OPTIONS)

        def one_call_each() -> None:
            for q in questions:
                for p in personas:
                    for order in orders:
                        c = choice_conversation(conv(p, q), OPTIONS, order)
                        model.position_probs([model._prompt_text(c)], len(OPTIONS))

        batched()  # warm-up
        fast = len(questions) / median_time(batched, repeats)
        return fast, len(questions) / median_time(one_call_each, repeats)

    fast, slow_rate = scoring(PERSONAS)
    rows.append(
        ("score items/s, 5x4 batched", fast, "1 call per community x order", slow_rate, "/s")
    )
    fast, slow_rate = scoring([f"{p}\n{RULES}" for p in PERSONAS])
    rows.append(
        ("  same, +~250-token rules prompt", fast, "1 call per community x order", slow_rate, "/s")
    )


class _Table:
    """Prints each row as soon as it is measured: a slow machine still shows partial results."""

    def append(self, row: tuple[str, float, str, float, str]) -> None:
        name, value, base_name, base, unit = row
        print(
            f"{name:<38} {value:>8.3f}{unit:<2} | {base_name:<30} {base:>8.3f}{unit:<2} "
            f"{value / base:>7.3f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
