"""Tune the embedder on (prompt, rule) pairs, so recall learns how a domain's prompts are worded.

MiniLM was trained on web pairs; it has never seen "Telling my half-brother that I love him"
matched with "You have a duty to only express emotions that are genuine". A few thousand such
pairs, learned contrastively (each prompt against every other rule in its batch), move recall
where rewording rules cannot. The result is a plain sentence-transformers directory, so any
place that takes an embedder directory takes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pluralism.errors import InputError

log = logging.getLogger(__name__)

# Written next to the weights: what the directory was tuned from, so a result can be traced and
# a re-tune recognised.
TUNE_FILE = "pluralism-tune.json"


@dataclass(frozen=True)
class TuneReport:
    """What `tune_embedder` did: where the model went and what it learned from."""

    path: Path
    base: str
    pairs: int
    rules: int
    epochs: int
    steps: int
    seconds: float
    digest: str


def _batches(
    pairs: Sequence[tuple[str, str]], size: int, rng: random.Random
) -> list[list[tuple[str, str]]]:
    """Shuffled batches in which no rule text repeats.

    Every other rule in a batch is a negative for a prompt; a second copy of its own rule would
    be a "negative" identical to the answer, teaching the model to push the pair apart.
    """
    pending = list(pairs)
    rng.shuffle(pending)
    batches: list[list[tuple[str, str]]] = []
    while pending:
        batch: list[tuple[str, str]] = []
        seen: set[str] = set()
        rest: list[tuple[str, str]] = []
        for pair in pending:
            if len(batch) < size and pair[1] not in seen:
                batch.append(pair)
                seen.add(pair[1])
            else:
                rest.append(pair)
        if len(batch) < 2:
            break  # one rule left over: nothing to contrast it with
        batches.append(batch)
        pending = rest
    return batches


def pairs_digest(pairs: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for prompt, rule in pairs:
        h.update(prompt.encode())
        h.update(b"\x00")
        h.update(rule.encode())
        h.update(b"\x01")
    return h.hexdigest()


def tune_embedder(
    pairs: Sequence[tuple[str, str]],
    out: str | Path,
    *,
    base: str | Path | None = None,
    epochs: int = 3,
    learning_rate: float = 3e-5,
    batch_size: int = 32,
    seed: int = 0,
    overwrite: bool = False,
) -> TuneReport:
    """Fine-tune `base` (default: the bundled MiniLM) on `(prompt, rule text)` pairs into `out`.

    Each prompt is pulled towards its rule and away from the other rules of its batch (the
    multiple-negatives ranking loss). Use it with `SentenceTransformerEmbedder(out)`, or the
    `--embedder` / `rules_embedder` options of the commands and the proxy.
    """
    from pluralism.embedding import minilm_path

    clean = [(p.strip(), r.strip()) for p, r in pairs if p.strip() and r.strip()]
    rules = len({r for _, r in clean})
    if rules < 2:
        raise InputError(
            f"tuning needs prompts for at least 2 different rules, got {rules}: add `examples:` "
            "to more rules, or pass more pairs."
        )
    if epochs < 1 or batch_size < 2 or learning_rate <= 0:
        raise InputError("epochs must be >= 1, batch_size >= 2 and learning_rate > 0.")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory; name a new directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError(
            f"{target} is not empty; name a new directory, or overwrite it (--overwrite)."
        )
    source = Path(base) if base is not None else minilm_path()
    if not source.is_dir():
        raise InputError(
            f"base model {source} is not a directory of a sentence-transformers model."
        )

    # Tuning reads local directories only; never let a typo send the loader to a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6 moved the losses; 3-5 have them here
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:
        from sentence_transformers.losses import (  # type: ignore[no-redef]
            MultipleNegativesRankingLoss,
        )

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model: Any = SentenceTransformer(str(source), device="cpu")
    # `preprocess` in sentence-transformers 6, `tokenize` before it.
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    loss = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    steps = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in _batches(clean, batch_size, rng):
            features = [
                tokenize([p for p, _ in batch]),
                tokenize([r for _, r in batch]),
            ]
            value = loss(features, None)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            steps += 1
        log.info("tune: epoch %d of %d, loss %.3f", epoch + 1, epochs, value.item())
    model.eval()
    seconds = time.perf_counter() - start
    target.mkdir(parents=True, exist_ok=True)
    model.save(str(target))
    digest = pairs_digest(clean)
    report = TuneReport(
        path=target,
        base=str(base) if base is not None else "all-MiniLM-L6-v2",
        pairs=len(clean),
        rules=rules,
        epochs=epochs,
        steps=steps,
        seconds=round(seconds, 1),
        digest=digest,
    )
    meta = {
        "base": report.base,
        "pairs": report.pairs,
        "rules": report.rules,
        "pairs_sha256": digest,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
    }
    (target / TUNE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return report
