"""Every example in examples/ runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()


def test_custom_pool_example_uses_its_own_communities() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_pool.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert "communities: ['city-workers', 'farmers']" in proc.stdout
    assert "steered to: farmers" in proc.stdout
