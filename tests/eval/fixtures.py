"""Tiny benchmark files in the Modular Pluralism and OpinionQA formats, written per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUESTIONS = [f"Should town number {i} build a new park?" for i in range(12)]


def write(path: Path, rows: Any) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def distributional_rows(countries: tuple[str, ...] = ("Japan", "France")) -> list[dict[str, Any]]:
    rows = []
    for i, q in enumerate(QUESTIONS):
        for j, country in enumerate(countries):
            rows.append(
                {
                    "question": f"Question: {q}\nOptions: A. Yes B. No\nAnswer:",
                    "options": ["Yes", "No"],
                    "attribute": country,
                    "gold_distribution": [0.8, 0.2] if j == 0 else [0.3, 0.7],
                    "id": i,
                }
            )
    return rows


def steerable_oqa_rows() -> list[dict[str, Any]]:
    return [
        {
            "question": f"Question: {q}\nOptions: A. Yes B. No C. Maybe\nAnswer:",
            "options": ["Yes", "No", "Maybe"],
            "attribute": "POLPARTY_Republican" if i % 2 else "POLIDEOLOGY_Liberal",
            "gold_distribution": [0.2, 0.5, 0.3],
            "id": i,
        }
        for i, q in enumerate(QUESTIONS)
    ]


def steerable_vk_rows() -> list[dict[str, Any]]:
    return [
        {
            "situation": "Helping refugees",
            "vrd": "Right to a safe environment",
            "label": "C",
            "id": 1,
        },
        {"situation": "Lying to a friend", "vrd": "Honesty", "label": "B", "id": 2},
    ]


def overton_rows() -> list[dict[str, Any]]:
    return [
        {
            "situation": "Lying to protect a friend",
            "vrd": ["Honesty", "Loyalty"],
            "explanation": ["Lying is dishonest.", "Protecting a friend shows loyalty."],
        },
        {"situation": "Eating meat", "vrd": ["Animal welfare"], "explanation": ["Animals suffer."]},
    ]


def survey_dir(root: Path) -> Path:
    """An OpinionQA-shaped folder: one wave, POLPARTY answers with raw counts."""
    wave = root / "American_Trends_Panel_W1"
    wave.mkdir(parents=True)
    data = {
        f"Q{i}_W1": {
            "MC_options": ["Yes", "No", "Refused"],
            "question_text": q,
            "Republican": {"Yes": 30.0, "No": 70.0, "Refused": 5.0},
            "Democrat": {"Yes": 80.0, "No": 20.0},
        }
        for i, q in enumerate(QUESTIONS)
    }
    (wave / "POLPARTY_data.json").write_text(json.dumps(data), encoding="utf-8")
    return root
