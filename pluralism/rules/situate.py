"""Situated principles (SPRI): a few principles for this prompt, scored by a critic, refined.

The default model is a 135M SmolLM2 that often ignores the requested format, so every step has
a fallback: principles that do not parse are replaced by the recalled rules' first sentences,
and the critic's score is read from the model's probabilities of "1".."5" (`score_batch`) rather
than from free text, falling back to parsing generated text when a backend cannot score.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

from pluralism.errors import ModelError
from pluralism.models._protocol import ChatModel, Conversation
from pluralism.types import GenerationParams, Message, Principle, RuleHit

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|principle\s*\d*\s*[:.-])\s*", re.IGNORECASE)
_DIGIT = re.compile(r"[1-5]")
# Options for `score_batch`, which shows them lettered (A-E) and averages over their orders.
_LEVELS = [
    "1 - useless or generic",
    "2 - weak",
    "3 - acceptable",
    "4 - good and specific",
    "5 - specific and important",
]
_MIN_CHARS = 12
_MAX_CHARS = 300


class PrincipleCache:
    """LRU of (prompt, rules version) -> (principles, rounds); owned by a `RuleMemory`."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._data: OrderedDict[tuple[str, str], tuple[list[Principle], int]] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[list[Principle], int] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return [p.model_copy() for p in hit[0]], hit[1]
            return None

    def put(self, key: tuple[str, str], value: tuple[list[Principle], int]) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _hits_key(hits: Sequence[RuleHit]) -> str:
    text = "\n".join(f"{h.rule.id}\x00{h.rule.text}" for h in hits)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _clean(line: str) -> str:
    text = _BULLET.sub("", line).strip().strip('"').strip()
    return text[:_MAX_CHARS]


def parse_principles(text: str, limit: int) -> list[str]:
    """Principles from a model's list answer: one per line, bullets and numbers stripped.

    A model that ignores the list format and writes one paragraph gets split into sentences.
    """
    out: list[str] = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1:
        lines = re.split(r"(?<=[.!?。！？])\s+", lines[0])
    for line in lines:
        p = _clean(line)
        if len(p) >= _MIN_CHARS and p.lower() not in {o.lower() for o in out}:
            out.append(p)
        if len(out) >= limit:
            break
    return out


def parse_score(text: str) -> float | None:
    """The first digit 1-5 in a critic's answer, or None when it gave none."""
    m = _DIGIT.search(text)
    return float(m.group()) if m else None


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.!?。！？])\s*", text.strip(), maxsplit=1)[0]
    return sentence[:_MAX_CHARS]


def _rules_block(hits: Sequence[RuleHit]) -> str:
    return "\n".join(f"- {h.rule.text.strip()[:_MAX_CHARS]}" for h in hits) or "- (no rules apply)"


def _writer(prompt: str, hits: Sequence[RuleHit], n: int) -> Conversation:
    system = "You write short, concrete principles that guide a helpful and careful answer."
    user = (
        f"Rules:\n{_rules_block(hits)}\n\nQuestion: {prompt}\n\n"
        f"Write at most {n} principles, specific to this question, that an answer should follow. "
        "One per line, each starting with '- '."
    )
    return [Message(role="system", content=system), Message(role="user", content=user)]


def _critic(prompt: str, principle: str, *, as_text: bool = False) -> Conversation:
    user = (
        f"Question: {prompt}\nPrinciple: {principle}\n\n"
        "How useful is this principle for answering this question well, from 1 (useless or "
        "generic) to 5 (specific and important)?"
    )
    if as_text:
        user += " Answer with one digit."
    return [Message(role="user", content=user)]


def _refiner(prompt: str, hits: Sequence[RuleHit], principle: str, score: float) -> Conversation:
    user = (
        f"Rules:\n{_rules_block(hits)}\n\nQuestion: {prompt}\nPrinciple: {principle}\n"
        f"A critic scored this principle {score:.1f} out of 5. Rewrite it so it is specific to the "
        "question and consistent with the rules. Write only the new principle, in one sentence."
    )
    return [Message(role="user", content=user)]


# A critic whose most likely level has less probability than this has not formed a view (0.2 is
# uniform over five levels). The bundled 135M model scores every principle ~2.95 this way;
# refining on such a score would spend two more rounds of generation learning nothing.
_MIN_CONFIDENCE = 0.3


def _score(
    model: ChatModel, prompt: str, texts: Sequence[str], params: GenerationParams
) -> list[float | None]:
    try:
        probs = model.score_batch([_critic(prompt, t) for t in texts], _LEVELS)
        # Expected level under the model's distribution: smooth, and never unparseable.
        return [
            round(sum((i + 1) * p for i, p in enumerate(row)), 3)
            if max(row, default=0.0) >= _MIN_CONFIDENCE
            else None
            for row in probs
        ]
    except (NotImplementedError, ModelError):
        convs = [_critic(prompt, t, as_text=True) for t in texts]
        answers = model.generate(convs, params.model_copy(update={"max_tokens": 4}))
        # No digit at all: the critic had no view (None), as with a flat distribution.
        scored = [parse_score(a) for a in answers]
        return [None if s is None else min(5.0, max(1.0, s)) for s in scored]


def situate_principles(
    prompt: str,
    hits: Sequence[RuleHit],
    model: ChatModel,
    *,
    max_principles: int = 3,
    threshold: float = 4.0,
    max_rounds: int = 3,
    cache: PrincipleCache | None = None,
    rules_version: str | None = None,
    params: GenerationParams | None = None,
) -> tuple[list[Principle], int]:
    """At most `max_principles` principles for `prompt` and the number of critic rounds used.

    Round 1 writes and scores; each later round rewrites only the principles scored below
    `threshold`, keeping a rewrite when it does not score lower. A principle the critic had no
    view on keeps `score=None` and is not refined. Cached by (prompt, version).
    """
    if max_principles <= 0:
        return [], 0
    key = (prompt, rules_version or _hits_key(hits))
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    p = params or GenerationParams(max_tokens=96)
    (draft,) = model.generate([_writer(prompt, hits, max_principles)], p)
    texts = parse_principles(draft, max_principles)
    if not texts:
        texts = [_first_sentence(h.rule.text) for h in hits[:max_principles] if h.rule.text.strip()]
    if not texts:
        return [], 0
    scores = _score(model, prompt, texts, p)
    rounds = 1
    while rounds < max_rounds and any(s is not None and s < threshold for s in scores):
        weak = [i for i, s in enumerate(scores) if s is not None and s < threshold]
        rewrites = model.generate(
            [_refiner(prompt, hits, texts[i], scores[i] or 0.0) for i in weak],
            p.model_copy(update={"max_tokens": 64}),
        )
        fresh = [parse_principles(r, 1) for r in rewrites]
        candidates = [(i, f[0]) for i, f in zip(weak, fresh, strict=True) if f]
        if candidates:
            new_scores = _score(model, prompt, [t for _, t in candidates], p)
            for (i, text), s in zip(candidates, new_scores, strict=True):
                old = scores[i]
                if s is not None and old is not None and s >= old:
                    texts[i], scores[i] = text, s
        rounds += 1
    result = [Principle(text=t, score=s) for t, s in zip(texts, scores, strict=True)]
    if cache is not None:
        cache.put(key, ([r.model_copy() for r in result], rounds))
    return result, rounds


def format_principles(principles: Sequence[Principle]) -> str:
    """Principles as a block for the meta prompt."""
    if not principles:
        return ""
    lines = ["Principles for this answer:"]
    lines += [f"{n}. {p.text}" for n, p in enumerate(principles, 1)]
    return "\n".join(lines)
