"""A tiny real LoRA training run: adapter + community file that the system then uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pluralism.eval._data import is_heldout
from pluralism.eval._train import TrainConfig, split_targets, tidy_adapter
from tests.eval import fixtures as fx


def test_split_keeps_heldout_and_excluded_questions_out() -> None:
    targets = [(f"Question number {i} about parks?", ["Yes", "No"], [0.5, 0.5]) for i in range(60)]
    cfg = TrainConfig(max_questions=None, val_limit=100)
    banned = targets[0][0] if not is_heldout(targets[0][0]) else targets[1][0]
    train, val = split_targets(targets, cfg, exclude=[f"Question: {banned}\nAnswer:"])
    used = {q for q, _, _ in train + val}
    assert not any(is_heldout(q) for q in used)
    assert banned not in used
    assert not {q for q, _, _ in train} & {q for q, _, _ in val}


def test_a_saved_adapter_folder_is_the_same_bytes_whichever_machine_wrote_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "README.md").write_text("peft's empty card")
    config = tmp_path / "adapter_config.json"
    config.write_text(
        '{"target_modules": ["v_proj", "q_proj", "o_proj"], '
        '"base_model_name_or_path": "/root/.cache/x/smollm2"}'
    )
    tidy_adapter(tmp_path)
    first = config.read_text()
    assert not (tmp_path / "README.md").exists()
    assert '"HuggingFaceTB/SmolLM2-135M-Instruct"' in first and "/root" not in first
    shuffled = first.replace('"o_proj",\n    "q_proj"', '"q_proj",\n    "o_proj"')
    assert shuffled != first  # peft writes its set of modules in any order
    config.write_text(shuffled)
    tidy_adapter(tmp_path)
    assert config.read_text() == first
    assert first.index('"o_proj"') < first.index('"q_proj"') < first.index('"v_proj"')


@pytest.mark.integration
def test_train_writes_an_adapter_the_system_uses(tmp_path: Path, embedder: Any) -> None:
    survey = fx.survey_dir(tmp_path / "survey")
    out = tmp_path / "pool"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pluralism",
            "community",
            "train",
            "--survey",
            str(survey),
            "--attribute",
            "POLPARTY",
            "--group",
            "Republican",
            "--out",
            str(out),
            "--questions",
            "4",
            "--epochs",
            "1",
            "--lr",
            "0.01",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    adapter = out / "adapters" / "republican"
    weights = adapter / "adapter_model.safetensors"
    assert weights.stat().st_size < 2_000_000

    from pluralism.config import load_communities
    from pluralism.core import Pluralism
    from pluralism.settings import Settings

    (community,) = load_communities(out)
    assert community.adapter == "adapters/republican"
    assert community.population.groups == {"POLPARTY:Republican": 1.0}
    # The answers it learned from sit beside the adapter, held-out questions left out, the
    # survey's non-answers dropped and the raw counts turned into shares.
    from pluralism.answers import load_answers

    assert community.answers == "adapters/republican/answers.jsonl"
    answered = load_answers(out / community.answers)
    assert [a.question for a in answered] == [q for q in fx.QUESTIONS if not is_heldout(q)]
    assert all(a.options == ["Yes", "No"] for a in answered)
    assert all(a.distribution == pytest.approx([0.3, 0.7]) for a in answered)
    system = Pluralism([community], embedder=embedder, rules=None, settings=Settings(rules_k=0))
    resp = system.respond(
        fx.QUESTIONS[0],
        mode="distributional",
        population="POLPARTY_Republican",
        options=["Yes", "No"],
    )
    assert resp.distribution is not None
    assert sum(resp.distribution.values()) == pytest.approx(1.0)
    assert "republican" in system.meta.adapters  # type: ignore[attr-defined]
    assert any(n.startswith("answers: republican blended") for n in resp.trace.notes)


@pytest.mark.integration
def test_keep_best_saves_the_epoch_with_the_lowest_validation_js(tmp_path: Path) -> None:
    from pluralism.eval._train import train_choice_adapter
    from pluralism.types import Community

    targets = [(q, ["Yes", "No"], [0.9, 0.1]) for q in fx.QUESTIONS]
    cfg = TrainConfig(
        max_questions=4, epochs=2, lr=0.01, val_fraction=0.5, val_limit=2, keep_best=True
    )
    community = Community(
        id="t", kind="perspective", name="T", description="A test.", persona="You answer."
    )
    report = train_choice_adapter(community, targets, tmp_path / "t", cfg=cfg)
    assert report.val > 0 and len(report.val_curve) == 2
    scores = [report.val_js_before, *report.val_curve]
    assert report.val_js_after == min(scores)
    assert report.best_epoch == scores.index(min(scores))
    assert (tmp_path / "t" / "adapter_model.safetensors").is_file()
