"""Prompt → community weights, and steer text → one community.

Cultural Palette's meta-agent activates only the cultures a prompt concerns; here that gating is a
softmax over cosine similarities between the prompt and each community's vector (its description
and exemplars), cut to the top-k and a minimum weight. Modular Pluralism picks the steering target
by asking the LLM; that stays available as `select_with_model`, but the default is an embedding
match, which costs no model call and says how sure it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pluralism.embedding import Embedder, Vectors
from pluralism.errors import InputError, SteerNotFoundError
from pluralism.models._protocol import ChatModel
from pluralism.population import mentions
from pluralism.types import Community, GenerationParams

_SENTENCE = re.compile(r"(?<=[.!?])\s+|:\s+")
# How much naming a country or survey group counts, added to a cosine similarity.
MENTION_BONUS_STEER = 0.5
MENTION_BONUS_ROUTE = 0.1


@dataclass(frozen=True)
class RouterSettings:
    """How sharply prompts gate communities, and how sure a steer match must be."""

    temperature: float = 0.08
    top_k: int = 3
    min_weight: float = 0.05
    steer_threshold: float = 0.25

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise InputError("router temperature must be > 0; use e.g. 0.05")
        if self.top_k < 1:
            raise InputError("router top_k must be at least 1")
        if not 0 <= self.min_weight < 1:
            raise InputError("router min_weight must be in [0, 1)")


@dataclass(frozen=True)
class SteerMatch:
    community: Community
    score: float
    method: str


def community_text(c: Community) -> list[str]:
    """The texts a community is recognised by: each sentence of its description, its exemplars."""
    sentences = [t.strip() for t in _SENTENCE.split(c.description) if t.strip()]
    return [*sentences, *c.exemplars]


def _fingerprint(c: Community) -> str:
    return hashlib.sha256("\x1f".join(community_text(c)).encode()).hexdigest()


def softmax_gate(
    sims: Sequence[float], *, temperature: float, top_k: int, min_weight: float
) -> list[float]:
    """Softmax over similarities, keep the top-k at or above `min_weight`, renormalise.

    The best community always survives, so a prompt never routes to nobody.
    """
    s = np.asarray(sims, dtype=np.float64) / temperature
    w = np.exp(s - s.max())
    w /= w.sum()
    keep = np.zeros_like(w, dtype=bool)
    for rank, idx in enumerate(np.argsort(-w, kind="stable")):
        if rank < top_k and (rank == 0 or w[idx] >= min_weight):
            keep[idx] = True
    w = np.where(keep, w, 0.0)
    return [float(x) for x in w / w.sum()]


class Router:
    """Holds one vector per community; routes prompts and matches steer targets."""

    def __init__(
        self,
        communities: Sequence[Community],
        embedder: Embedder,
        settings: RouterSettings | None = None,
        *,
        vector_cache: dict[str, Vectors] | None = None,
    ) -> None:
        if not communities:
            raise InputError("the router needs at least one community; add a community file")
        self.communities = list(communities)
        self.embedder = embedder
        self.settings = settings or RouterSettings()
        # Keyed by content, so a reloaded pool only re-embeds the communities that changed.
        self._cache = vector_cache if vector_cache is not None else {}
        rows = [self._rows(c) for c in self.communities]
        # A community matches by its centroid (what it is about overall) and by its closest
        # single text (a specific exemplar); half of each is steadier than either alone.
        centroids = [r.mean(axis=0) for r in rows]
        self.matrix = np.stack([v / (np.linalg.norm(v) or 1.0) for v in centroids])
        self._texts = np.concatenate(rows)
        self._starts = np.cumsum([0] + [len(r) for r in rows[:-1]])

    def _rows(self, c: Community) -> Vectors:
        key = f"{self.embedder.model_id}:{_fingerprint(c)}"
        if key not in self._cache:
            self._cache[key] = self.embedder.encode(community_text(c))
        return self._cache[key]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.communities]

    def similarities(self, text: str, *, mention_bonus: float = 0.0) -> list[float]:
        """Per community: half centroid cosine, half best single-text cosine, plus a bonus
        when the text names one of the community's countries or survey groups."""
        vec = self.embedder.encode([text])[0]
        best = np.maximum.reduceat(self._texts @ vec, self._starts)
        sims = 0.5 * (self.matrix @ vec) + 0.5 * best
        if mention_bonus:
            named = mentions(text, self.communities)
            sims = sims + mention_bonus * np.array([named.get(i, 0.0) for i in self.ids])
        return [float(x) for x in sims]

    def route(self, prompt: str) -> dict[str, float]:
        """Weights over the activated communities (summing to 1), highest first."""
        st = self.settings
        weights = softmax_gate(
            self.similarities(prompt, mention_bonus=MENTION_BONUS_ROUTE),
            temperature=st.temperature,
            top_k=st.top_k,
            min_weight=st.min_weight,
        )
        pairs = sorted(zip(self.ids, weights, strict=True), key=lambda p: -p[1])
        return {cid: w for cid, w in pairs if w > 0}

    def get(self, community_id: str) -> Community | None:
        return next((c for c in self.communities if c.id == community_id), None)

    def match(self, steer: str) -> SteerMatch:
        """The community a steer target names or describes; a clear error when none fits."""
        target = steer.strip()
        if not target:
            raise InputError("the steer target is empty; name a community or describe one")
        for c in self.communities:
            if target.casefold() in (c.id.casefold(), c.name.casefold()):
                return SteerMatch(c, 1.0, "id")
        # A named country or survey group is strong evidence; a short description embeds poorly.
        sims = self.similarities(target, mention_bonus=MENTION_BONUS_STEER)
        best = int(np.argmax(sims))
        if sims[best] < self.settings.steer_threshold:
            listing = ", ".join(f"{c.id} ({c.name})" for c in self.communities)
            raise SteerNotFoundError(
                f"No community matches the steer target {target!r} (best: "
                f"{self.communities[best].id} at {sims[best]:.2f}, needs "
                f"{self.settings.steer_threshold:.2f}); steer to one of: {listing}."
            )
        return SteerMatch(self.communities[best], sims[best], "embedding")

    async def select_with_model(self, steer: str, model: ChatModel) -> SteerMatch:
        """Modular Pluralism's way: ask the model which community fits.

        Falls back to the embedding match when the answer names no listed community.
        """
        listing = "\n".join(
            f"{i + 1}. {c.name}: {c.description}" for i, c in enumerate(self.communities)
        )
        prompt = (
            f"Which community best represents: {steer}?\n{listing}\n"
            "Answer with the number of one community only."
        )
        (answer,) = await model.agenerate(
            [[{"role": "user", "content": prompt}]],
            GenerationParams(max_tokens=4, repetition_penalty=1.0),
        )
        found = re.search(r"\d+", answer)
        if found and 1 <= int(found.group()) <= len(self.communities):
            return SteerMatch(self.communities[int(found.group()) - 1], 1.0, "model")
        return self.match(steer)
