"""Optional extras: a command that needs one says, in one line, how to install it."""

from __future__ import annotations

import importlib.util

from pluralism.errors import ModelPackageMissingError

# Training community adapters and tuning the rule embedder run on torch; serving does not.
TRAIN = ("torch", "transformers", "sentence_transformers", "peft")


def require_train(what: str) -> None:
    """A ModelPackageMissingError naming `what` and the install command, unless the train
    extra's packages can be imported."""
    missing = [m for m in TRAIN if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelPackageMissingError(
            f"{what} needs the train extra (missing: {', '.join(missing)}); install it with "
            f"`pip install 'pluralism[train]'`."
        )
