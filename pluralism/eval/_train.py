"""Community LMs from community data: LoRA adapters on the local base model (peft).

Survey answers (OpinionQA groups, GlobalOpinionQA countries) train with a soft-label cross-entropy
over the option letters: the community's answer shares are the target of the letter distribution,
on exactly the prompt the system and eval use (the persona as system turn, then the question with
lettered options in one cyclic order). Writing (a text corpus) trains with the causal-LM loss.

Only the last few layers carry LoRA weights: backpropagation then stops there, which is what makes
a few hundred questions train in minutes on a CPU. Adapters are saved in float16 (well under 1 MB).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pluralism.errors import InputError
from pluralism.eval._data import Target, is_heldout, norm_question
from pluralism.eval._metrics import js_distance, mean
from pluralism.types import Community, Message


@dataclass
class TrainConfig:
    rank: int = 4
    layers: int = 3  # LoRA on the last `layers` decoder layers only
    shifts_per_question: int = 2
    modules: tuple[str, ...] = ("q_proj", "v_proj")
    epochs: int = 5
    lr: float = 3e-3
    batch: int = 8
    max_questions: int | None = 200
    val_fraction: float = 0.15
    val_limit: int = 12
    # Keep the weights of the epoch with the lowest validation JS instead of the last epoch's.
    # Off by default: on a dozen validation questions the choice mostly follows noise.
    keep_best: bool = False
    seed: int = 0


@dataclass
class TrainReport:
    train: int
    val: int
    val_js_before: float
    val_js_after: float
    seconds: float
    losses: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)  # validation JS after each epoch
    best_epoch: int = 0  # the epoch whose weights were saved (0: the untrained adapter)


def _bucket(question: str, salt: str) -> float:
    digest = hashlib.sha1(f"{salt}|{norm_question(question)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def usable_targets(targets: Sequence[Target], exclude: Sequence[str] = ()) -> list[Target]:
    """The targets a community may learn from: held-out benchmark questions are never used, nor
    any question whose text contains or is contained in an `exclude` text (other wordings)."""
    banned = [norm_question(e) for e in exclude if norm_question(e)]
    kept: list[Target] = []
    for t in targets:
        q = norm_question(t[0])
        if is_heldout(t[0]) or any(b in q or q in b for b in banned):
            continue
        kept.append(t)
    return kept


def in_validation_bucket(question: str, cfg: TrainConfig) -> bool:
    """Whether a question falls in the validation bucket: never trained on, whatever the caps
    on training and validation questions."""
    return _bucket(question, "val") < cfg.val_fraction


def split_targets(
    targets: Sequence[Target], cfg: TrainConfig, exclude: Sequence[str] = ()
) -> tuple[list[Target], list[Target]]:
    """Train and validation questions from the `usable_targets`."""
    kept = usable_targets(targets, exclude)
    if not kept:
        raise InputError("No training questions are left after the split; give more survey data.")
    val = [t for t in kept if in_validation_bucket(t[0], cfg)][: cfg.val_limit]
    train = [t for t in kept if not in_validation_bucket(t[0], cfg)]
    random.Random(cfg.seed).shuffle(train)
    if cfg.max_questions is not None:
        train = train[: cfg.max_questions]
    return train, val


def _messages(community: Community, question: str) -> list[Message]:
    from pluralism.modes._prompts import draft_messages

    return draft_messages(community, question)


def _wrap(lm: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    n_layers = int(lm._model.config.num_hidden_layers)
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=2 * cfg.rank,
        lora_dropout=0.0,
        target_modules=list(cfg.modules),
        layers_to_transform=list(range(max(0, n_layers - cfg.layers), n_layers)),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm._model, lora)


def _cache_val(
    lm: Any, layer: int, community: Community, val: Sequence[Target]
) -> list[tuple[dict[str, Any], list[list[int]], list[float]]]:
    """Validation questions in every cyclic order, frozen layers run once (as for training)."""
    from pluralism.models._choices import choice_conversation, shifts

    out = []
    for q, opts, gold in val:
        orders = shifts(len(opts))
        texts = [
            lm._prompt_text(choice_conversation(_messages(community, q), opts, o)) for o in orders
        ]
        out.append((_cache_inputs(lm, layer, texts), orders, list(gold)))
    return out


def _val_js(
    lm: Any, model: Any, layer: int, cached: Sequence[tuple[dict[str, Any], Any, list[float]]]
) -> float:
    """Mean JS distance of the model's shift-averaged distributions on validation questions,
    as scoring computes them (every cyclic order, averaged back onto the options)."""
    import torch

    from pluralism.models._choices import unshift

    scores = []
    model.eval()
    with torch.no_grad():
        for inputs, orders, gold in cached:
            probs = _top_letter_logp(lm, layer, inputs, len(gold)).exp().tolist()
            scores.append(js_distance(unshift(probs, orders), gold))
    model.train()
    return mean(scores)


class _Stop(Exception):
    """Ends a forward pass once the frozen layers have run; the rest is recomputed in training."""


def _cache_inputs(lm: Any, layer: int, texts: Sequence[str]) -> dict[str, Any]:
    """Hidden states (and masks, rotary tables) entering decoder layer `layer`, computed once.

    Layers below `layer` carry no LoRA weights, so their output never changes during training:
    caching it means every epoch runs only the top layers, a fraction of a forward pass.
    """
    import torch

    captured: dict[str, Any] = {}

    def grab(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        captured["hidden"] = (args[0] if args else kwargs["hidden_states"]).detach()
        captured["kwargs"] = {
            k: kwargs.get(k) for k in ("attention_mask", "position_embeddings", "position_ids")
        }
        raise _Stop

    layers = lm._model.model.layers
    handle = layers[layer].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        enc = lm._encode(list(texts))
        mask = enc["attention_mask"]
        with torch.no_grad(), contextlib.suppress(_Stop):
            lm._model(
                input_ids=enc["input_ids"],
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=False,
            )
    finally:
        handle.remove()
    return captured


def _top_letter_logp(lm: Any, layer: int, cached: dict[str, Any], n: int) -> Any:
    """Letter log-probabilities from cached inputs, running only layers `layer`.. (with grad)."""
    import torch

    inner = lm._model.model
    h = cached["hidden"]
    for block in inner.layers[layer:]:
        h = block(h, use_cache=False, **cached["kwargs"])
        h = h[0] if isinstance(h, tuple) else h
    logits = lm._model.lm_head(inner.norm(h[:, -1:, :]))[:, -1, :]
    logp = torch.log_softmax(logits.float(), dim=-1)
    letters = torch.stack([torch.logsumexp(logp[:, ids], dim=-1) for ids in lm._letters(n)], dim=-1)
    return torch.log_softmax(letters, dim=-1)


def train_choice_adapter(
    community: Community,
    targets: Sequence[Target],
    out: str | Path,
    *,
    cfg: TrainConfig | None = None,
    exclude: Sequence[str] = (),
    on_step: Callable[[int, int, float], None] | None = None,
    lm: Any = None,
) -> TrainReport:
    """Fit a LoRA adapter so `community`'s letter distribution matches `targets`; save it."""
    import torch

    from pluralism.models import TransformersChatModel
    from pluralism.models._choices import check_options, choice_conversation, shifts

    cfg = cfg or TrainConfig()
    for _, opts, _ in targets:
        check_options(opts)
    train, val = split_targets(targets, cfg, exclude)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    lm = lm or TransformersChatModel()
    n_layers = int(lm._model.config.num_hidden_layers)
    first = max(0, n_layers - cfg.layers)
    # `shifts_per_question` cyclic orders per question, fixed batches: the cache is per batch.
    # Rows of one batch share their option count and have similar lengths (little padding:
    # caching the frozen layers' output is most of the training time).
    rows = [
        (lm._prompt_text(choice_conversation(_messages(community, q), opts, order)), gold, order)
        for q, opts, gold in train
        for order in rng.sample(shifts(len(opts)), min(cfg.shifts_per_question, len(opts)))
    ]
    by_n: dict[int, list[Any]] = {}
    for r in sorted(rows, key=lambda r: len(r[0])):
        by_n.setdefault(len(r[2]), []).append(r)
    batches = [g[i : i + cfg.batch] for g in by_n.values() for i in range(0, len(g), cfg.batch)]
    model = _wrap(lm, cfg)
    val_cache = _cache_val(lm, first, community, val)
    before = _val_js(lm, model, first, val_cache) if val else float("nan")
    cache = []
    for chunk in batches:
        texts = [text for text, _, _ in chunk]
        target = torch.tensor([[gold[idx] for idx in order] for _, gold, order in chunk])
        cache.append((_cache_inputs(lm, first, texts), target, len(chunk[0][2])))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    report = TrainReport(len(train), len(val), before, float("nan"), 0.0)
    total = cfg.epochs * len(cache)
    model.train()
    # Validation JS after every epoch (cheap: the validation prompts' frozen layers are cached
    # too); with `keep_best`, the weights of the best epoch are kept rather than the last.
    best = before
    kept = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    for epoch in range(1, cfg.epochs + 1):
        for i in rng.sample(range(len(cache)), len(cache)):
            cached, target, n = cache[i]
            loss = -(target * _top_letter_logp(lm, first, cached, n)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            report.losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(report.losses), total, report.losses[-1])
        if not val or not cfg.keep_best:
            report.best_epoch = epoch
        if not val:
            continue
        report.val_curve.append(_val_js(lm, model, first, val_cache))
        if cfg.keep_best and report.val_curve[-1] < best:
            best, report.best_epoch = report.val_curve[-1], epoch
            kept = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    if val and cfg.keep_best:
        with torch.no_grad():
            for k, v in model.named_parameters():
                if k in kept:
                    v.copy_(kept[k])
    if val:
        report.val_js_after = best if cfg.keep_best else report.val_curve[-1]
    save_adapter(model, out)
    model.unload()  # leaves `lm` as the plain base model for the next adapter
    report.seconds = time.perf_counter() - started
    return report


def save_adapter(model: Any, out: str | Path) -> None:
    """Save the peft adapter with float16 weights (half the bytes; loads into float32 fine)."""
    from safetensors.torch import load_file, save_file

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    weights = target / "adapter_model.safetensors"
    tensors = {k: v.half() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    tidy_adapter(target)


def tidy_adapter(target: Path) -> None:
    """Drop peft's empty model card and the machine-specific base path, so the folder can ship;
    sort peft's set of target modules, so a rebuild changes only what training changed."""
    import json

    (target / "README.md").unlink(missing_ok=True)
    config = target / "adapter_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def train_text_adapter(
    corpus: str | Path,
    out: str | Path,
    *,
    cfg: TrainConfig | None = None,
    block: int = 128,
    on_step: Callable[[int, int, float], None] | None = None,
    lm: Any = None,
) -> TrainReport:
    """Causal-LM fine-tuning on a community's writing (a UTF-8 file) in `block`-token chunks."""
    import torch

    from pluralism.models import TransformersChatModel

    cfg = cfg or TrainConfig()
    path = Path(corpus)
    if not path.is_file():
        raise InputError(f"Corpus file {path} does not exist; pass a UTF-8 text file.")
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise InputError(f"Corpus file {path} is empty; give it some of the community's writing.")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    lm = lm or TransformersChatModel()
    ids = lm._tok(text, add_special_tokens=False)["input_ids"]
    chunks = [ids[i : i + block] for i in range(0, len(ids), block) if len(ids[i : i + block]) > 8]
    if cfg.max_questions is not None:
        chunks = chunks[: cfg.max_questions]
    model = _wrap(lm, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    steps = [
        chunks[i : i + cfg.batch]
        for _ in range(cfg.epochs)
        for i in range(0, len(chunks), cfg.batch)
    ]
    report = TrainReport(len(chunks), 0, float("nan"), float("nan"), 0.0)
    pad = lm._tok.pad_token_id
    for step, batch in enumerate(steps, 1):
        model.train()
        width = max(len(c) for c in batch)
        input_ids = torch.tensor([c + [pad] * (width - len(c)) for c in batch])
        mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in batch])
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        report.losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, len(steps), report.losses[-1])
    save_adapter(model, out)
    model.unload()
    report.seconds = time.perf_counter() - started
    return report
