"""Benchmark harness (Modular Pluralism's three tasks) and community-LM training.

`pluralism eval …` and `pluralism community train …` are the command-line faces of this package;
the names below are the library face. Submodules load lazily so `import pluralism.eval` is cheap.
"""

from __future__ import annotations

from pluralism._lazy import lazy_attributes

_LAZY = {
    "Item": "pluralism.eval._data",
    "load_items": "pluralism.eval._data",
    "load_survey": "pluralism.eval._data",
    "is_heldout": "pluralism.eval._data",
    "js_distance": "pluralism.eval._metrics",
    "top_match": "pluralism.eval._metrics",
    "coverage": "pluralism.eval._metrics",
    "CoverageJudge": "pluralism.eval._metrics",
    "EmbeddingJudge": "pluralism.eval._metrics",
    "Answerer": "pluralism.eval._methods",
    "run": "pluralism.eval._runner",
    "Summary": "pluralism.eval._runner",
    "write_report": "pluralism.eval._report",
    "TrainConfig": "pluralism.eval._train",
    "train_choice_adapter": "pluralism.eval._train",
    "train_text_adapter": "pluralism.eval._train",
}


__getattr__ = lazy_attributes("pluralism.eval", _LAZY, globals())


__all__ = sorted(_LAZY)
