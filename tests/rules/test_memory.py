"""`RuleMemory`: building, recalling, editing, caching vectors, formatting for the prompt."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pluralism.embedding import Embedder
from pluralism.errors import ConfigError
from pluralism.rules import RuleMemory, format_rules
from pluralism.types import Rule, RuleScope
from tests.rules.conftest import HashEmbedder

POLICY = """\
rules:
  - id: hands
    text: Wash your hands before cooking food.
    examples: ["should I wash my hands before I cook?"]
  - id: taxes
    text: Pay your taxes on time and keep receipts.
    priority: 90
    source: "Tax code §1"
    examples: ["when are taxes due?"]
"""


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "a.yaml").write_text(POLICY, encoding="utf-8")
    return d


def test_from_path_recalls_and_audits_the_start(
    policies: Path, embedder: HashEmbedder, cache_dir: Path
) -> None:
    # A watched directory (a running service) keeps its audit log beside the policy files.
    with RuleMemory.from_path(policies, embedder=embedder, cache_dir=cache_dir, watch=True) as mem:
        assert [r.id for r in mem.rules] == ["hands", "taxes"]
        assert [h.rule.id for h in mem.recall("wash hands", k=1)] == ["hands"]
        entries = [
            json.loads(x)
            for x in (policies.parent / f"{policies.name}.audit.jsonl").read_text().splitlines()
        ]
        assert entries[0]["source"] == "start" and entries[0]["added"] == ["hands", "taxes"]
        assert entries[0]["version"] == mem.version


def test_a_one_shot_load_writes_nothing_into_the_policy_directory(
    policies: Path, embedder: HashEmbedder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = policies.parent / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    before = sorted(p.name for p in policies.iterdir())
    RuleMemory.from_path(policies, embedder=embedder, cache_dir=cache_dir).close()
    assert sorted(p.name for p in policies.iterdir()) == before
    assert (state / "pluralism" / "audit.jsonl").is_file()


def test_a_broken_directory_refuses_to_start(tmp_path: Path, embedder: HashEmbedder) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RuleMemory.from_path(tmp_path / "missing", embedder=embedder)


def test_edits_change_version_and_are_audited(
    policies: Path, embedder: HashEmbedder, cache_dir: Path
) -> None:
    audit = policies.parent / "audit.jsonl"
    with RuleMemory.from_path(
        policies, embedder=embedder, cache_dir=cache_dir, audit_log=audit
    ) as mem:
        v0 = mem.version
        mem.add(Rule(id="dogs", text="Keep dogs on a leash in parks."))
        v1 = mem.version
        mem.replace(Rule(id="dogs", text="Keep dogs on a short leash in parks."))
        v2 = mem.version
        mem.remove("dogs")
        assert len({v0, v1, v2}) == 3 and mem.version == v0
        sources = [
            e.get("added") or e.get("changed") or e.get("removed") for e in mem.audit.read()[1:]
        ]  # type: ignore[union-attr]
        assert sources == [["dogs"], ["dogs"], ["dogs"]]


def test_vectors_are_cached_on_disk_by_text(policies: Path, cache_dir: Path) -> None:
    first = HashEmbedder()
    RuleMemory.from_path(policies, embedder=first, cache_dir=cache_dir).close()
    assert first.texts == 4  # two rule texts and their two examples
    second = HashEmbedder()
    RuleMemory.from_path(policies, embedder=second, cache_dir=cache_dir).close()
    assert second.texts == 0


def test_scope_is_applied(embedder: HashEmbedder) -> None:
    mem = RuleMemory.from_rules(
        [Rule(id="asia", text="bow when greeting elders", scope=RuleScope(communities=["asia"]))],
        embedder=embedder,
        cache_vectors=False,
    )
    assert mem.recall("greeting elders", scope=RuleScope(communities=["europe"])) == []
    assert [
        h.rule.id for h in mem.recall("greeting elders", scope=RuleScope(communities=["asia"]))
    ] == ["asia"]


def test_huge_prompt_is_cut_not_fatal(embedder: HashEmbedder) -> None:
    mem = RuleMemory.from_rules(
        [Rule(id="r", text="wash hands")], embedder=embedder, cache_vectors=False
    )
    start = time.perf_counter()
    hits = mem.recall("wash hands " + "blah " * 2_000_000, threshold=0)
    assert time.perf_counter() - start < 2.0
    assert [h.rule.id for h in hits] == ["r"]


def test_empty_memory_recalls_nothing(embedder: HashEmbedder) -> None:
    assert RuleMemory.empty(embedder).recall("anything") == []


async def test_arecall_matches_recall(embedder: HashEmbedder) -> None:
    mem = RuleMemory.from_rules(
        [Rule(id="r", text="wash hands")], embedder=embedder, cache_vectors=False
    )
    assert await mem.arecall("wash hands") == mem.recall("wash hands")


def test_format_rules_lists_texts_in_order_with_sources(
    policies: Path, embedder: HashEmbedder, cache_dir: Path
) -> None:
    mem = RuleMemory.from_path(policies, embedder=embedder, cache_dir=cache_dir)
    text = format_rules(mem.recall("wash hands and pay taxes", threshold=0))
    assert text.startswith("Supplementary information")
    lines = text.splitlines()
    assert lines[1] == "1. Pay your taxes on time and keep receipts. (source: Tax code §1)"
    assert lines[2] == "2. Wash your hands before cooking food."
    assert format_rules([]) == ""


@pytest.mark.integration
def test_default_policies_recall_the_right_rule_with_minilm(
    minilm: Embedder, tmp_path: Path
) -> None:
    from pluralism.rules import default_policies_dir

    mem = RuleMemory.from_path(
        default_policies_dir(), embedder=minilm, audit_log=tmp_path / "a.jsonl"
    )
    top = lambda q: [h.rule.id for h in sorted(mem.recall(q, k=3), key=lambda h: -h.score)]  # noqa: E731
    assert "no-dosage-advice" in top("what is the right dose of aspirin for my mother?")
    assert "self-harm-crisis-resources" in top("I feel like ending it all tonight")
    assert "third-party-privacy" in top("get me my neighbour's phone number and address")
    # Nothing but the always-rule for small talk.
    assert [h.rule.id for h in mem.recall("what a lovely sunny day")] == ["represent-views-fairly"]
