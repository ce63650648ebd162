"""What a one-rule edit costs a watched policy set of 1k and 50k rules.

    python bench/bench_reload.py [--sizes 1000 50000] [--files-of 1000]

For each size: rules spread over files of `--files-of` rules each, loaded once; then one
line of one file is edited and `RuleMemory.reload` timed. Printed next to each other:

- parse: every file read as each reload did before (PyYAML's pure-Python parser, twice: nodes
  for line numbers, then data), `load_policies` with no cache (libyaml, once), and with the
  cache a watched memory keeps (only the edited file is read);
- the whole reload (parse, vectors, index swap) with the cache.

The embedder is a bag of hashed words (fast, deterministic), so the figures are the reload
path's own cost; with MiniLM, the edited rule's new text adds one encode (~6 ms) and the
unchanged ones come from the vector cache. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from pluralism.rules import RuleMemory, load_policies
from pluralism.rules._files import ParseCache

WORDS = [
    "tip",
    "waiter",
    "dinner",
    "late",
    "rude",
    "guest",
    "host",
    "gift",
    "shoes",
    "home",
    "elder",
    "respect",
    "bow",
    "hand",
    "food",
]


class HashEmbedder:
    model_id = "bench-hash-64"
    dim = 64

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
            out[i, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def write(root: Path, n: int, per: int) -> None:
    rng = random.Random(0)
    for f in range(max(1, n // per)):
        lines = ["rules:"]
        for i in range(min(per, n)):
            text = " ".join(rng.choice(WORDS) for _ in range(12))
            lines += [f"  - id: r{f}-{i}", f"    text: {text}", f'    examples: ["{text[:20]}?"]']
        (root / f"f{f:04d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 50000])
    ap.add_argument("--files-of", type=int, default=1000)
    args = ap.parse_args()
    print(
        f"{'rules':>8}{'parse, before':>16}{'no cache':>11}{'cached':>9}{'speed-up':>10}"
        f"{'whole reload':>15}"
    )
    for n in args.sizes:
        root = Path(tempfile.mkdtemp()) / "policies"
        root.mkdir()
        write(root, n, args.files_of)
        mem = RuleMemory.from_path(root, embedder=HashEmbedder(), cache_vectors=False)
        edited = root / "f0000.yaml"
        text = edited.read_text(encoding="utf-8")
        edited.write_text(text.replace("    text: ", "    text: edited ", 1), encoding="utf-8")
        started = time.perf_counter()
        for path in sorted(root.glob("*.yaml")):
            raw = path.read_text(encoding="utf-8")
            yaml.compose(raw, Loader=yaml.SafeLoader)
            yaml.safe_load(raw)
        before = time.perf_counter() - started
        started = time.perf_counter()
        load_policies(root, known_communities=None)
        cold = time.perf_counter() - started
        cache: ParseCache = {}
        load_policies(root, known_communities=None, cache=cache)
        edited.write_text(text, encoding="utf-8")
        started = time.perf_counter()
        load_policies(root, known_communities=None, cache=cache)
        warm = time.perf_counter() - started
        edited.write_text(text.replace("    text: ", "    text: again ", 1), encoding="utf-8")
        started = time.perf_counter()
        assert mem.reload([str(edited)])
        whole = time.perf_counter() - started
        print(
            f"{n:>8,}{before:>14.2f} s{cold:>9.2f} s{warm:>7.2f} s{before / warm:>9.0f}x"
            f"{whole:>13.2f} s"
        )
        mem.close()


if __name__ == "__main__":
    main()
