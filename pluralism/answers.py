"""Answer memory: a community's own survey answers, recalled for a question like one it answered.

An adapter learns a community's answers from a few hundred questions, but the small base model
carries that only part of the way to a new question. The answers themselves are better evidence
when the new question resembles an answered one: another item of the same battery, the same
answer scale. A community file may name a JSONL file of answered questions (`answers:`); when
its model scores options, the option distribution is blended with the similarity-weighted mean
of the nearest answered questions that have as many options (`Settings.answers_weight`,
`Settings.answers_k`). Similarity is the question's cosine plus the mean cosine of the options
position by position; an answered question with the same options in another order ("No / Yes"
for "Yes / No") lends its shares reordered, as an exact option match.

One line per answered question::

    {"question": "How important is religion in your life?",
     "options": ["Very important", "Somewhat important", "Not too important",
                 "Not at all important"],
     "distribution": [0.52, 0.24, 0.12, 0.12]}
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from pluralism.config import validation_message
from pluralism.embedding import Embedder
from pluralism.errors import ConfigError

log = logging.getLogger(__name__)

# Softmax temperature over neighbour similarities (question cosine + option cosine, so 0–2).
# Chosen with `Settings.answers_k` and `answers_weight` on questions no shipped adapter trained
# on and no benchmark holds out (bench/bench_answers.py): 0.2–0.3 were best, sharper lost ~0.01.
TEMPERATURE = 0.2
MAX_BYTES = 50_000_000


class Answered(BaseModel):
    """One answered question: its options and the share of the community choosing each."""

    question: str = Field(min_length=1, max_length=4000)
    options: list[str] = Field(min_length=2, max_length=26)
    distribution: list[float]

    @model_validator(mode="after")
    def _shares(self) -> Answered:
        if len(self.distribution) != len(self.options):
            raise ValueError(
                f"distribution has {len(self.distribution)} shares for {len(self.options)} "
                "options; give one share per option"
            )
        if any(not np.isfinite(p) or p < 0 for p in self.distribution):
            raise ValueError("distribution shares must be non-negative numbers")
        total = sum(self.distribution)
        if total <= 0:
            raise ValueError("distribution shares sum to 0; give the share choosing each option")
        self.distribution = [p / total for p in self.distribution]
        return self


@dataclass(frozen=True)
class Recalled:
    """A distribution estimated from answered questions, and which ones it came from."""

    distribution: list[float]
    neighbours: list[tuple[str, float]]  # (answered question, similarity), nearest first


def load_answers(path: str | Path) -> list[Answered]:
    """Read and validate an answers file; an error names the file, the line and the fix."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            "answers file does not exist; fix the community's `answers:` path (relative to the "
            "community file) or delete the line",
            path=str(p),
        )
    if p.stat().st_size > MAX_BYTES:
        raise ConfigError(
            f"answers file is larger than {MAX_BYTES // 1_000_000} MB; keep the questions "
            "this community actually answered",
            path=str(p),
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            "answers file is not UTF-8 text; save it as UTF-8 JSON lines", path=str(p)
        ) from None
    out: list[Answered] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fix = 'write one {"question", "options", "distribution"} object per line'
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"not a JSON object ({exc.msg}); {fix}", path=str(p), line=n
            ) from None
        if not isinstance(obj, dict):
            raise ConfigError(f"not a JSON object; {fix}", path=str(p), line=n)
        try:
            out.append(Answered.model_validate(obj))
        except ValidationError as exc:
            what, _ = validation_message(exc, {})
            raise ConfigError(what, path=str(p), line=n) from None
    if not out:
        raise ConfigError(
            "answers file holds no answered questions; add some or delete the `answers:` line",
            path=str(p),
        )
    return out


def write_answers(
    path: str | Path, answers: Sequence[tuple[str, Sequence[str], Sequence[float]]]
) -> Path:
    """Write (question, options, distribution) rows as an answers file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"question": q, "options": list(o), "distribution": [round(float(x), 4) for x in d]},
            ensure_ascii=False,
        )
        for q, o, d in answers
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _key(options: Sequence[str]) -> tuple[str, ...]:
    return tuple(" ".join(o.casefold().split()) for o in options)


class _Group(NamedTuple):
    """The answered questions with one option count, as arrays recall multiplies."""

    answered: list[Answered]
    questions: np.ndarray  # (n, dim)
    options: np.ndarray  # (n, options, dim)
    shares: np.ndarray  # (n, options)
    keys: list[tuple[str, ...]]  # each question's options, normalised
    option_sets: list[tuple[str, ...]]  # the same, sorted: equal for reorderings


class AnswerMemory:
    """Answered questions, embedded once, recalled by question and option similarity."""

    def __init__(self, answers: Sequence[Answered], embedder: Embedder) -> None:
        if not answers:
            raise ValueError("an answer memory needs at least one answered question")
        self._embedder = embedder
        self.answers = list(answers)
        texts = sorted({a.question for a in answers} | {o for a in answers for o in a.options})
        vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
        self._vec = dict(zip(texts, vectors, strict=True))
        # Grouped by option count: only those can lend their shares position by position.
        self._by_n: dict[int, _Group] = {}
        for n in sorted({len(a.options) for a in answers}):
            group = [a for a in answers if len(a.options) == n]
            keys = [_key(a.options) for a in group]
            self._by_n[n] = _Group(
                answered=group,
                questions=np.stack([self._vec[a.question] for a in group]),
                options=np.stack([np.stack([self._vec[x] for x in a.options]) for a in group]),
                shares=np.asarray([a.distribution for a in group], dtype=np.float64),
                keys=keys,
                option_sets=[tuple(sorted(k)) for k in keys],
            )

    @staticmethod
    def _reorder(
        group: _Group, sims: np.ndarray, question_sims: np.ndarray, key: tuple[str, ...]
    ) -> np.ndarray:
        """Shares of answered questions whose options are the asked ones in another order,
        put in the asked order; their option similarity becomes exact (in place on `sims`)."""
        shares = group.shares
        if len(set(key)) != len(key):
            return shares
        wanted = tuple(sorted(key))
        for i, (have, option_set) in enumerate(zip(group.keys, group.option_sets, strict=True)):
            if have == key or option_set != wanted:
                continue
            if shares is group.shares:
                shares = shares.copy()
            shares[i] = [group.shares[i][have.index(x)] for x in key]
            sims[i] = question_sims[i] + 1.0
        return shares

    @classmethod
    def from_path(cls, path: str | Path, embedder: Embedder) -> AnswerMemory:
        return cls(load_answers(path), embedder)

    def __len__(self) -> int:
        return len(self.answers)

    def recall(
        self,
        question: str,
        options: Sequence[str],
        k: int = 10,
        *,
        temperature: float = TEMPERATURE,
    ) -> Recalled | None:
        """The similarity-weighted mean of the `k` nearest answered questions with as many
        options; None when none has that many."""
        group = self._by_n.get(len(options))
        if group is None:
            return None
        # Texts asked about are embedded per call, not kept: a long-running server would
        # otherwise grow with every distinct question (the embedder may cache them itself).
        texts = [question, *options]
        vec = {t: self._vec[t] for t in texts if t in self._vec}
        new = [t for t in dict.fromkeys(texts) if t not in vec]
        if new:
            vec.update(
                zip(new, np.asarray(self._embedder.encode(new), dtype=np.float32), strict=True)
            )
        q = vec[question]
        o = np.stack([vec[x] for x in options])
        question_sims = group.questions @ q
        sims = question_sims + np.einsum("nmd,md->n", group.options, o) / len(options)
        shares = self._reorder(group, sims, question_sims, _key(options))
        top = np.argsort(-sims)[:k]
        w = np.exp((sims[top] - sims[top[0]]) / temperature)
        w /= w.sum()
        mean = w @ shares[top]
        return Recalled(
            distribution=[float(x) for x in mean / mean.sum()],
            neighbours=[(group.answered[i].question, round(float(sims[i]) / 2, 4)) for i in top],
        )


def blend(model: Sequence[float], recalled: Recalled, weight: float) -> list[float]:
    """(1 - weight) · the model's distribution + weight · the recalled one."""
    out = [(1 - weight) * m + weight * r for m, r in zip(model, recalled.distribution, strict=True)]
    s = sum(out) or 1.0
    return [x / s for x in out]


# (resolved path, embedder id) → (file stamp, memory).
_cache: dict[tuple[str, int], tuple[tuple[int, int] | None, AnswerMemory]] = {}
_lock = threading.Lock()


def memory_for(path: str | Path, embedder: Embedder) -> AnswerMemory:
    """One memory per file and embedder, shared by every `Pluralism` in the process (embedding
    a few thousand texts is the cost, and a test suite builds many instances). An edited file
    is read again on next use; a broken edit is logged and the last good answers keep serving."""
    p = Path(path)
    key = (str(p.resolve()), id(embedder))
    try:
        st = p.stat()
        stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[1]._embedder is not embedder:
        hit = None  # the id of an embedder that is gone, reused
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        memory = AnswerMemory.from_path(p, embedder)
    except ConfigError as exc:
        if hit is None:
            raise
        log.error("%s; still answering with the last good answers of this file", exc)
        memory = hit[1]
    with _lock:
        if len(_cache) >= 64:  # a long-lived process that keeps building pools with new embedders
            _cache.clear()
        _cache[key] = (stamp, memory)
    return memory
