"""Hot reload: edits are linted and swapped in; broken edits are refused; all is audited."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pluralism.rules import RuleMemory
from pluralism.rules._watch import AuditLog
from tests.rules.conftest import HashEmbedder

A = 'rules:\n  - id: hands\n    text: Wash your hands.\n    examples: ["wash hands?"]\n'
B = 'rules:\n  - id: dogs\n    text: Leash your dog.\n    examples: ["walk the dog?"]\n'


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def live(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[RuleMemory, Path]]:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "a.yaml").write_text(A)
    mem = RuleMemory.from_path(d, embedder=HashEmbedder(), watch=True, cache_dir=cache_dir)
    yield mem, d
    mem.close()


def ids(mem: RuleMemory) -> list[str]:
    return sorted(r.id for r in mem.rules)


def test_new_file_is_swapped_in_and_audited(live: tuple[RuleMemory, Path]) -> None:
    mem, d = live
    v0 = mem.version
    (d / "b.yaml").write_text(B)
    assert wait_for(lambda: ids(mem) == ["dogs", "hands"])
    assert mem.version != v0
    # The swap comes first and its audit line right after, from the watcher's thread.
    assert wait_for(lambda: mem.audit.read()[-1].get("added") == ["dogs"])  # type: ignore[union-attr]
    last = mem.audit.read()[-1]  # type: ignore[union-attr]
    assert last["status"] == "applied"
    assert any(f.endswith("b.yaml") for f in last["files"])


def test_changed_and_removed_rules_are_audited(live: tuple[RuleMemory, Path]) -> None:
    mem, d = live
    (d / "a.yaml").write_text(A.replace("Wash your hands.", "Wash your hands well."))
    assert wait_for(lambda: mem.rules[0].text == "Wash your hands well.")
    # The swap comes first and its audit line right after, from the watcher's thread.
    assert wait_for(lambda: mem.audit.read()[-1].get("changed") == ["hands"])  # type: ignore[union-attr]
    (d / "a.yaml").unlink()
    assert wait_for(lambda: ids(mem) == [])
    assert wait_for(lambda: mem.audit.read()[-1].get("removed") == ["hands"])  # type: ignore[union-attr]


def test_broken_edit_is_refused_and_old_rules_keep_serving(
    live: tuple[RuleMemory, Path], caplog: pytest.LogCaptureFixture
) -> None:
    mem, d = live
    v0 = mem.version
    (d / "a.yaml").write_text("rules:\n  - id: hands\n    text: [broken\n")
    assert wait_for(lambda: any(e["status"] == "refused" for e in mem.audit.read()))  # type: ignore[union-attr]
    assert mem.version == v0 and ids(mem) == ["hands"]
    assert [h.rule.id for h in mem.recall("wash hands")] == ["hands"]
    assert "Refused a policy change" in caplog.text and "a.yaml:" in caplog.text
    refused = [e for e in mem.audit.read() if e["status"] == "refused"][-1]  # type: ignore[union-attr]
    assert "YAML syntax error" in refused["problems"][0]
    # Fixing the file brings reloads back.
    (d / "a.yaml").write_text(A + B.replace("rules:\n", ""))
    assert wait_for(lambda: ids(mem) == ["dogs", "hands"])


def test_audit_file_and_dotfiles_do_not_trigger_reloads(live: tuple[RuleMemory, Path]) -> None:
    mem, d = live
    n = len(mem.audit.read())  # type: ignore[union-attr]
    (d / ".scratch.yaml").write_text(B)
    (d / "notes.txt").write_text("hello")
    time.sleep(1.0)
    assert len(mem.audit.read()) == n  # type: ignore[union-attr]


def test_a_directory_removed_and_recreated_keeps_hot_reload(live: tuple[RuleMemory, Path]) -> None:
    mem, d = live
    shutil.rmtree(d)
    time.sleep(0.5)
    assert ids(mem) == ["hands"]  # nothing to read: the last good rules keep serving
    d.mkdir()
    (d / "b.yaml").write_text(B)
    assert wait_for(lambda: ids(mem) == ["dogs"])
    (d / "a.yaml").write_text(A)  # and later edits still apply
    assert wait_for(lambda: ids(mem) == ["dogs", "hands"])
    history = mem.audit.read()  # type: ignore[union-attr]
    assert history[0]["status"] == "applied" and history[0]["added"] == ["hands"]  # kept


def test_a_directory_swapped_by_rename_keeps_hot_reload(live: tuple[RuleMemory, Path]) -> None:
    mem, d = live
    new = d.parent / "policies.new"
    new.mkdir()
    (new / "b.yaml").write_text(B)
    d.rename(d.parent / "policies.old")
    new.rename(d)
    assert wait_for(lambda: ids(mem) == ["dogs"])
    (d / "a.yaml").write_text(A)
    assert wait_for(lambda: ids(mem) == ["dogs", "hands"])


def test_a_symlink_swapped_to_another_release_keeps_hot_reload(
    tmp_path: Path, cache_dir: Path
) -> None:
    one, two = tmp_path / "release-1", tmp_path / "release-2"
    for release, text in ((one, A), (two, B)):
        release.mkdir()
        (release / "rules.yaml").write_text(text)
    link = tmp_path / "policies"
    link.symlink_to(one)
    mem = RuleMemory.from_path(link, embedder=HashEmbedder(), watch=True, cache_dir=cache_dir)
    try:
        assert ids(mem) == ["hands"]
        staged = tmp_path / "policies.tmp"
        staged.symlink_to(two)
        staged.rename(link)  # atomic, as deploy tools switch releases
        assert wait_for(lambda: ids(mem) == ["dogs"])
        (two / "more.yaml").write_text(A)
        assert wait_for(lambda: ids(mem) == ["dogs", "hands"])
    finally:
        mem.close()


def test_close_stops_watching(tmp_path: Path, cache_dir: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.yaml").write_text(A)
    mem = RuleMemory.from_path(d, embedder=HashEmbedder(), watch=True, cache_dir=cache_dir)
    mem.close()
    (d / "b.yaml").write_text(B)
    time.sleep(1.0)
    assert ids(mem) == ["hands"]


def test_processes_sharing_an_audit_log_record_one_change_once(tmp_path: Path) -> None:
    # Two workers of one server watch the same directory and both see each edit.
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)
    change = {"status": "applied", "version": "v2", "files": ["tips.yaml"], "added": ["tip"]}
    first.append(change)
    second.append(dict(change))
    assert len(first.read()) == 1
    second.append({**change, "version": "v3"})
    first.append(change)  # back to v2: a new change, not a repeat of the line before
    assert [e["version"] for e in first.read()] == ["v2", "v3", "v2"]
