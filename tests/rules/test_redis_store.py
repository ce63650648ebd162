"""The conformance suite and the multi-replica behaviour, against a real redis-server."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pluralism.errors import RuleStoreError
from pluralism.rules import InMemoryRuleStore, RedisRuleStore, RuleMemory, _redis_store
from tests.rules.conformance import DIM, StoreConformance, rule, vec
from tests.rules.conftest import HashEmbedder, RedisServer

pytestmark = pytest.mark.redis


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def make(url: str, **kw: object) -> RedisRuleStore:
    return RedisRuleStore(url, dim=DIM, embedder_id="test", retry_max_s=0.2, **kw)  # type: ignore[arg-type]


class TestRedisRuleStore(StoreConformance):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisRuleStore]:
        s = make(redis_url)
        yield s
        s.close()


def test_an_edit_on_one_replica_reaches_the_other(redis_url: str) -> None:
    a, b = make(redis_url), make(redis_url)
    try:
        a.add(rule("x", "first"), vec(1, 0, 0, 0))
        assert wait_for(lambda: b.version == a.version)
        a.replace(rule("x", "second"), vec(1, 0, 0, 0))
        assert wait_for(lambda: b.version == a.version)
        assert b.snapshot().rules[0].text == "second"
        b.remove("x")
        assert wait_for(lambda: len(a.snapshot()) == 0)
        assert a.version == b.version
    finally:
        a.close()
        b.close()


def test_a_new_replica_loads_existing_rules(redis_url: str) -> None:
    a = make(redis_url)
    a.add(rule("x"), vec(1, 0, 0, 0))
    a.add(rule("y"), vec(0, 1, 0, 0))
    b = make(redis_url)
    try:
        assert sorted(r.id for r in b.snapshot().rules) == ["x", "y"]
        assert b.version == a.version
        assert [h.rule.id for h in b.search(vec(0, 1, 0, 0), 1)] == ["y"]
    finally:
        a.close()
        b.close()


def test_a_damaged_vector_leaves_only_its_rule_out(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a = make(redis_url)
    try:
        a.add(rule("x"), vec(1, 0, 0, 0))
        a.add(rule("y"), vec(0, 1, 0, 0))
        a.add(rule("z"), vec(0, 0, 1, 0))
        # A vector of another length, as another embedder or a half-written edit leaves it.
        a._client.hset("pluralism:rules:vecs", "y", b"\x00" * 3)
        with caplog.at_level(logging.WARNING):
            b = make(redis_url)
        assert sorted(r.id for r in b.snapshot().rules) == ["x", "z"]
        assert [h.rule.id for h in b.search(vec(0, 0, 1, 0), 1)] == ["z"]
        assert "Left out 1 rules" in caplog.text
        b.close()
    finally:
        a.close()


def test_only_a_big_reload_freezes_objects_and_the_collector_stays_on(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make(redis_url)
    a.add(rule("x"), vec(1, 0, 0, 0))
    before = gc.get_freeze_count()
    small = make(redis_url)
    big = None
    try:
        assert gc.isenabled()
        assert gc.get_freeze_count() == before
        monkeypatch.setattr(_redis_store, "FREEZE_MIN_ROWS", 1)
        big = make(redis_url)
        assert gc.isenabled()
        assert gc.get_freeze_count() > before
        assert [r.id for r in big.snapshot().rules] == ["x"]
    finally:
        gc.unfreeze()
        for store in (a, small, big):
            if store is not None:
                store.close()


def test_namespaces_are_separate(redis_url: str) -> None:
    a, b = make(redis_url, namespace="one"), make(redis_url, namespace="two")
    try:
        a.add(rule("x"), vec(1, 0, 0, 0))
        time.sleep(0.2)
        assert len(b.snapshot()) == 0
    finally:
        a.close()
        b.close()


def test_unreachable_at_start_is_one_clear_error() -> None:
    with pytest.raises(RuleStoreError, match=r"unreachable.*start it or fix the URL") as info:
        make("redis://127.0.0.1:1/0", connect_timeout_s=0.5)
    assert "\n" not in str(info.value) and info.value.retryable
    # The library's entry point also names its own way out.
    with pytest.raises(RuleStoreError, match=r"unreachable.*fallback_to_memory=True"):
        RuleMemory.from_redis(
            "redis://127.0.0.1:1/0",
            embedder=HashEmbedder(),
            connect_timeout_s=0.5,
            cache_vectors=False,
        )


def test_fallback_to_memory_warns_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        mem = RuleMemory.from_redis(
            "redis://127.0.0.1:1/0",
            embedder=HashEmbedder(),
            fallback_to_memory=True,
            connect_timeout_s=0.5,
            cache_vectors=False,
        )
    assert isinstance(mem.store, InMemoryRuleStore)
    assert "memory instead" in caplog.text
    mem.add(rule("x", "wash hands before cooking"))
    assert [h.rule.id for h in mem.recall("wash hands", threshold=0)] == ["x"]


def test_another_embedder_is_refused(redis_url: str) -> None:
    a = make(redis_url)
    a.close()
    with pytest.raises(RuleStoreError, match="embedded with 'test'"):
        RedisRuleStore(redis_url, dim=DIM, embedder_id="other-model")


def test_lost_connection_keeps_serving_and_recovers(
    redis_server: RedisServer, redis_url: str
) -> None:
    a, b = make(redis_url), make(redis_url)
    try:
        a.add(rule("x"), vec(1, 0, 0, 0))
        assert wait_for(lambda: len(b.snapshot()) == 1)
        redis_server.stop()
        assert wait_for(lambda: not b.healthy)
        # Still answering from the last good rules while Redis is away.
        assert [h.rule.id for h in b.search(vec(1, 0, 0, 0), 1)] == ["x"]
        assert b.status()["healthy"] is False and b.status()["last_error"]
        with pytest.raises(RuleStoreError, match="not saved"):
            a.add(rule("y"), vec(0, 1, 0, 0))
        redis_server.start()  # empty again: a restarted Redis without persistence
        assert wait_for(lambda: a.healthy and b.healthy, timeout=10)
        # Redis came back with less than the replicas served: they keep the last good rules
        # rather than adopt an empty store...
        assert len(a.snapshot()) == len(b.snapshot()) == 1
        assert b.status()["stale_since"] is not None
        # ...until someone writes to it, and then they all serve what Redis holds.
        a.add(rule("z"), vec(0, 0, 1, 0))
        assert wait_for(lambda: b.version == a.version)
        assert [r.id for r in b.snapshot().rules] == ["z"]
        assert b.status()["reconnects"] >= 1
    finally:
        a.close()
        b.close()


def test_memory_over_redis_recalls_for_every_replica(redis_url: str) -> None:
    emb = HashEmbedder()
    m1 = RuleMemory.from_redis(redis_url, embedder=emb, cache_vectors=False)
    m2 = RuleMemory.from_redis(redis_url, embedder=emb, cache_vectors=False)
    try:
        m1.add(rule("hands", "wash hands before cooking"))
        assert wait_for(lambda: m2.version == m1.version)
        assert [h.rule.id for h in m2.recall("should I wash my hands", threshold=0)] == ["hands"]
        assert m2.healthy
    finally:
        m1.close()
        m2.close()


def test_policy_files_seed_redis_once_and_edits_reach_replicas(
    redis_url: str, tmp_path: Path
) -> None:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "a.yaml").write_text(
        'rules:\n  - id: hands\n    text: Wash hands.\n    examples: ["wash?"]\n'
    )
    emb = HashEmbedder()
    m1 = RuleMemory.from_redis(
        redis_url, embedder=emb, directory=d, watch=True, cache_vectors=False
    )
    counter = m1.status()["counter"]
    m2 = RuleMemory.from_redis(redis_url, embedder=emb, directory=d, cache_vectors=False)
    try:
        # Same files, same content hash: the second replica did not rewrite Redis.
        assert m2.status()["counter"] == counter
        assert [r.id for r in m2.rules] == ["hands"]
        (d / "b.yaml").write_text(
            'rules:\n  - id: dogs\n    text: Leash dogs.\n    examples: ["dog?"]\n'
        )
        assert wait_for(lambda: sorted(r.id for r in m2.rules) == ["dogs", "hands"], timeout=10)
    finally:
        m1.close()
        m2.close()


def test_a_redis_restarted_empty_gets_the_files_again_and_an_outage_edit_is_kept(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "a.yaml").write_text(
        'rules:\n  - id: hands\n    text: Wash hands.\n    examples: ["wash?"]\n'
    )
    emb = HashEmbedder()
    publisher = RuleMemory.from_redis(
        redis_url, embedder=emb, directory=d, watch=True, cache_vectors=False
    )
    replica = RuleMemory.from_redis(redis_url, embedder=emb, cache_vectors=False)
    served: list[list[str]] = []

    def ids(mem: RuleMemory) -> list[str]:
        now = sorted(r.id for r in mem.rules)
        served.append(now)
        return now

    try:
        assert ids(replica) == ["hands"]
        redis_server.stop()
        assert wait_for(lambda: not replica.healthy and not publisher.healthy)
        (d / "b.yaml").write_text(  # an edit while Redis is down: refused for now, not lost
            'rules:\n  - id: dogs\n    text: Leash dogs.\n    examples: ["dog?"]\n'
        )
        time.sleep(1.0)
        redis_server.start()  # back, and empty
        assert wait_for(lambda: ids(replica) == ["dogs", "hands"], timeout=15)
        assert wait_for(lambda: ids(publisher) == ["dogs", "hands"], timeout=5)
        assert [] not in served, "a replica served no rules after Redis came back empty"
        assert publisher.version == replica.version
    finally:
        publisher.close()
        replica.close()
