"""Next-token letter probabilities for multiple-choice prompts, sharing each prompt's prefix.

The k orderings of one question differ only after the question: system prompt (persona, rules),
history and question are the same tokens. So the shared prefix runs once per prompt, its KV cache
is repeated k times, and only the k short option suffixes run per ordering. On CPU, where a
forward pass costs in proportion to its tokens, that removes most of the work when the system
prompt is long. Results equal the plain full-sequence pass up to float rounding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

MAX_ROWS = 64  # rows per forward pass; bounds memory for long prompts


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows) - 1  # every row keeps >= 1 token to predict from
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return i
    return max(n, 0)


def _left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def _cache_kwarg(model: Any, cache: Any) -> dict[str, Any]:
    # transformers 5.x renamed `past_key_values` to `cache`; older releases only know the former.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    return {name: cache}


def _letter_rows(logits: Any, letters: Sequence[Sequence[int]]) -> list[list[float]]:
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    return [[float(probs[j, ids].sum()) for ids in letters] for j in range(probs.shape[0])]


def full_probs(
    model: Any,
    rows: Sequence[Sequence[int]],
    letters: Sequence[Sequence[int]],
    pad: int,
    extra: dict[str, Any],
) -> list[list[float]]:
    """One padded pass over whole sequences (the baseline, and the fallback)."""
    ids, mask = _left_pad(rows, pad)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        # Left padding shifts positions unless they are counted from each row's first token.
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        logits_to_keep=1,
        **extra,
    )
    return _letter_rows(out.logits[:, -1, :], letters)


def shared_prefix_probs(
    model: Any,
    groups: Sequence[Sequence[Sequence[int]]],
    letters: Sequence[Sequence[int]],
    pad: int,
    adapter_names: Sequence[str] | None,
) -> list[list[list[float]]]:
    """Letter probabilities for each group of k token sequences (one group per prompt)."""
    import torch

    k = len(groups[0])
    cuts = [_common_prefix(g) for g in groups]
    extra_p = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    if min(cuts) < 1:
        # No shared prefix to reuse (an empty template?): the plain pass is exact and simple.
        flat = [row for g in groups for row in g]
        extra = (
            {"adapter_names": [a for a in adapter_names for _ in range(k)]}
            if adapter_names is not None
            else {}
        )
        probs = full_probs(model, flat, letters, pad, extra)
        return [probs[i * k : (i + 1) * k] for i in range(len(groups))]
    ids_p, mask_p = _left_pad([g[0][:c] for g, c in zip(groups, cuts, strict=True)], pad)
    out = model(
        input_ids=ids_p,
        attention_mask=mask_p,
        position_ids=(mask_p.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
        **extra_p,
    )
    cache = getattr(out, "cache", None)  # renamed from `past_key_values` in transformers 5.x
    if cache is None:
        cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    suffixes = [row[c:] for g, c in zip(groups, cuts, strict=True) for row in g]
    ids_s, mask_s = _left_pad(suffixes, pad)
    # Suffix padding sits between prefix and suffix; the mask hides it and positions skip it.
    full_mask = torch.cat([mask_p.repeat_interleave(k, dim=0), mask_s], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, mask_p.shape[1] :]
    extra_s = (
        {"adapter_names": [a for a in adapter_names for _ in range(k)]}
        if adapter_names is not None
        else {}
    )
    out = model(
        input_ids=ids_s,
        attention_mask=full_mask,
        position_ids=positions,
        **_cache_kwarg(model, cache),
        use_cache=True,
        logits_to_keep=1,
        **extra_s,
    )
    probs = _letter_rows(out.logits[:, -1, :], letters)
    return [probs[i * k : (i + 1) * k] for i in range(len(groups))]
