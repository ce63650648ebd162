"""Distributional mode: answer probabilities calibrated to a population.

Modular Pluralism averages community distributions with equal weights; here the mixture uses the
population's weights over communities (from the community files), and falls back to uniform only
when no population is given or matched, which the trace records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pluralism.types import Perspective


def mixture(
    per_community: Mapping[str, Sequence[float]], weights: Mapping[str, float]
) -> list[float]:
    """Σ_c w_c · p_c over the communities present in both, renormalised."""
    shared = [c for c in per_community if weights.get(c, 0.0) > 0]
    if not shared:
        raise ValueError("no community has both a distribution and a positive weight")
    n = len(per_community[shared[0]])
    total_w = sum(weights[c] for c in shared)
    out = [0.0] * n
    for c in shared:
        for i, p in enumerate(per_community[c]):
            out[i] += weights[c] / total_w * p
    s = sum(out) or 1.0
    return [x / s for x in out]


def render_options(options: Sequence[str], dist: Sequence[float], population: str | None) -> str:
    """The distribution as text, most likely first, for clients that only read `text`."""
    who = f" for {population}" if population else ""
    ranked = sorted(zip(options, dist, strict=True), key=lambda p: -p[1])
    lines = [f"Estimated answer distribution{who}:"]
    lines += [f"- {opt}: {p:.0%}" for opt, p in ranked]
    return "\n".join(lines)


def render_perspectives(perspectives: Sequence[Perspective], population: str | None) -> str:
    """Without options, the answer is the perspectives themselves, each with its share."""
    who = f" in {population}" if population else ""
    lines = [f"Views{who}, with their estimated share:"]
    for p in sorted(perspectives, key=lambda p: -p.weight):
        lines.append(f"- {p.name or p.community} ({p.weight:.0%}): {p.text}")
    return "\n".join(lines)
