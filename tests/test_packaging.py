"""The wheel lists its packages by hand (three are mapped from the repo root); keep it complete."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "pluralism").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_default_data_ships_from_the_repository_root() -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    assert mapping == {
        "pluralism._defaults.communities": "communities",
        "pluralism._defaults.policies": "policies",
        "pluralism._defaults.values": "values",
    }
    for name in ("communities", "policies", "values"):
        assert list((ROOT / name).glob("*.yaml")), f"{name}/ ships no YAML file"
