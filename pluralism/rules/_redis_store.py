"""Rules shared by many proxy replicas through Redis.

Layout under a namespace `ns`: hash `ns:rules` (id -> rule JSON), hash `ns:vecs` (id -> float32
bytes), hash `ns:meta` (embedder id, dim), counter `ns:counter`, channel `ns:changes`. A write
updates the hashes and bumps the counter in one MULTI, then publishes {counter, ids}. Each
replica applies a message whose counter is its own plus one by re-reading just those ids, and
reloads everything on a gap (it missed messages while disconnected). While Redis is away the
replica keeps serving its last snapshot and retries in the background; `healthy` says so.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from pluralism._redact import redact
from pluralism.embedding import Vectors
from pluralism.errors import RuleStoreError
from pluralism.rules._dense import DenseIndex
from pluralism.rules._index import RuleIndex, json_digest
from pluralism.rules._store import SnapshotStore, apply_edits
from pluralism.types import Rule

log = logging.getLogger(__name__)

_SCAN_COUNT = 10_000
# From this many rules on, a full reload freezes the objects it made (see `_gc_paused`).
FREEZE_MIN_ROWS = 100_000


@contextmanager
def _gc_paused(*, freeze: bool) -> Iterator[None]:
    """Runs a block without Python's cyclic garbage collector; with `freeze`, freezes what it made.

    A full reload allocates millions of objects that all stay alive (rules, their scopes, the
    ids), so every collection the allocations trigger scans a growing heap and frees nothing:
    parsing 300k rules took 8.3 s with the collector on and 1.7 s with it off. Freezing them
    afterwards (`gc.freeze`) spares the first collection after the block, and every full one
    while serving, a walk over them (~4 s at 1M rules); they hold no reference cycles, so
    reference counting still frees them when a later snapshot replaces this one. Freezing is
    process-wide (a cycle alive at that moment is never collected), so it is kept for memories
    big enough to need it, after a collection that clears the garbage already there.
    """
    was_enabled = gc.isenabled()
    if freeze:
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


def _build_dense(into: list[DenseIndex], vectors: Vectors, kwargs: dict[str, int]) -> None:
    into.append(DenseIndex(vectors, **kwargs))


class RedisRuleStore(SnapshotStore):
    """A `RuleStore` kept in Redis; every replica holds a local snapshot for searching."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        dim: int,
        embedder_id: str,
        namespace: str = "pluralism:rules",
        connect_timeout_s: float = 2.0,
        retry_max_s: float = 5.0,
        ivf_min_rows: int | None = None,
    ) -> None:
        super().__init__(dim, ivf_min_rows=ivf_min_rows)
        import redis

        self.url = redact(url)  # for messages and logs; the password stays in the client
        self.embedder_id = embedder_id
        self._ns = namespace
        self._origin = uuid.uuid4().hex
        self._retry_max_s = retry_max_s
        self._redis_errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._client: Any = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout_s, socket_timeout=30.0
        )
        self._counter = 0
        self._healthy = False
        # Called after Redis comes back from an outage (RuleMemory.from_redis with a policies
        # directory sets it, to publish the files again).
        self.on_reconnect: Callable[[], None] | None = None
        # When Redis last came back older than what this replica serves (None: never).
        self.stale_since: float | None = None
        # Serving rules Redis no longer holds: the next write anyone makes is adopted whole.
        self._stale = False
        self.last_error: str | None = None
        self.reconnects = 0
        try:
            self._client.ping()
            self._check_meta()
            self._full_reload()
        except self._redis_errors as exc:
            down = RuleStoreError(
                f"Redis at {self.url} is unreachable ({redact(str(exc))}): start it or fix the URL."
            )
            down.retryable = True
            raise down from None
        except redis.ResponseError as exc:  # e.g. a database number the server does not have
            raise RuleStoreError(
                f"Redis at {self.url} refused the connection's set-up ({redact(str(exc))}): "
                "check the database number and credentials in the URL."
            ) from None
        self._healthy = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="rules-redis", daemon=True)
        self._thread.start()

    # -- keys -------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self._ns}:{name}"

    def _check_meta(self) -> None:
        meta = self._client.hgetall(self._key("meta"))
        if not meta:
            self._client.hset(
                self._key("meta"), mapping={"embedder": self.embedder_id, "dim": str(self.dim)}
            )
            return
        theirs = meta.get(b"embedder", b"").decode()
        if theirs != self.embedder_id or int(meta.get(b"dim", b"0")) != self.dim:
            raise RuleStoreError(
                f"The rules under {self._ns!r} in Redis were embedded with {theirs!r} but this "
                f"replica uses {self.embedder_id!r}: use the same embedder or another namespace."
            )

    # -- reading ----------------------------------------------------------------------------
    def _full_reload(self, *, force: bool = False) -> None:
        big = int(self._client.hlen(self._key("vecs"))) >= FREEZE_MIN_ROWS
        with _gc_paused(freeze=big):
            self._reload(force=force)

    def _scan(self, name: str) -> Iterator[dict[bytes, bytes]]:
        cursor = 0
        while True:
            cursor, chunk = self._client.hscan(self._key(name), cursor, count=_SCAN_COUNT)
            yield chunk
            if cursor == 0:
                break

    def _read_vectors(self) -> tuple[list[bytes], Vectors]:
        """Every (id, vector) in Redis, the vectors as one array in the order of the ids."""
        row = 4 * self.dim
        ids: list[bytes] = []
        seen: set[bytes] = set()
        blocks: list[Vectors] = []
        wrong = 0
        for chunk in self._scan("vecs"):
            # HSCAN may return a field twice while Redis rehashes.
            fresh = [(i, v) for i, v in chunk.items() if i not in seen]
            seen.update(i for i, _ in fresh)
            # A row of another size (damaged, or another embedder's) would shift every row
            # after it: leave its rule out rather than serve wrong vectors.
            good = [(i, v) for i, v in fresh if len(v) == row]
            wrong += len(fresh) - len(good)
            if good:
                ids.extend(i for i, _ in good)
                blob = b"".join(v for _, v in good)
                blocks.append(np.frombuffer(blob, dtype=np.float32).reshape(-1, self.dim))
        if wrong:
            log.warning("Left out %d rules whose vector in Redis is not %d floats", wrong, self.dim)
        if not blocks:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        return ids, np.concatenate(blocks)

    def _reload(self, *, force: bool) -> None:
        counter = int(self._client.get(self._key("counter")) or 0)
        # Vectors first, so the dense index (numpy, which releases the GIL) builds while the
        # rules are fetched and parsed (Python): on a 1M-rule load on two cores the two overlap
        # almost entirely.
        ids, vectors = self._read_vectors()
        dense: list[DenseIndex] = []
        kwargs = {} if self._ivf_min_rows is None else {"ivf_min_rows": self._ivf_min_rows}
        builder = threading.Thread(
            target=_build_dense, args=(dense, vectors, kwargs), name="rules-dense"
        )
        builder.start()
        try:
            rules_raw: dict[bytes, bytes] = {}
            for chunk in self._scan("rules"):
                rules_raw.update(chunk)
            if any(i not in rules_raw for i in ids):
                # A rule was removed between the two scans (or its write is half done): drop its
                # vector, and with it the index built over the old rows.
                keep = [k for k, i in enumerate(ids) if i in rules_raw]
                ids = [ids[k] for k in keep]
                vectors = vectors[keep]
                builder.join()
                dense.clear()
            rules = [Rule.model_validate_json(rules_raw[i]) for i in ids]
            # Redis holds exactly `model_dump_json()`, so hashing the bytes we already have
            # gives the same version as re-serialising every rule, at a fraction of the cost.
            digests = [json_digest(rules_raw[i]) for i in ids]
        finally:
            builder.join()
        del rules_raw
        index = RuleIndex(
            rules,
            vectors,
            digests=digests,
            ivf_min_rows=self._ivf_min_rows,
            dense=dense[0] if dense else None,
        )
        with self._write_lock:
            # A write may have landed while we read; the hashes we read are at least as new as
            # `counter`, so only an older counter means our read is stale.
            if counter < self._counter and not force:
                return
            self._counter = counter
            self._stale = False
            self._swap(index)

    def _apply_ids(self, ids: Sequence[str]) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self._key("rules"), list(ids))
        pipe.hmget(self._key("vecs"), list(ids))
        rules_raw, vecs_raw = pipe.execute()
        upserts: dict[str, tuple[Rule, Vectors]] = {}
        removals: list[str] = []
        for rid, raw, vec in zip(ids, rules_raw, vecs_raw, strict=True):
            if raw is None or vec is None:
                removals.append(rid)
            else:
                upserts[rid] = (
                    Rule.model_validate_json(raw),
                    np.frombuffer(vec, dtype=np.float32).copy(),
                )
        removals = [r for r in removals if r in self._index.position]
        self._swap(apply_edits(self._index, upserts, removals, ivf_min_rows=self._ivf_min_rows))

    def _on_message(self, data: bytes) -> None:
        msg = json.loads(data)
        counter = int(msg["counter"])
        with self._write_lock:
            if counter <= self._counter:
                return  # our own write, already applied, or an old message
            if counter == self._counter + 1 and msg.get("ids") is not None and not self._stale:
                self._apply_ids(msg["ids"])
                self._counter = counter
                return
        self._full_reload()

    def _listen(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._key("changes"))
                # Changes made while we were away arrive as a counter gap: catch up once.
                self._check_meta()
                remote = int(self._client.get(self._key("counter")) or 0)
                if remote < self._counter:
                    self._refuse_older(remote)
                elif remote != self._counter:
                    self._full_reload()
                back = not self._healthy
                if back:
                    log.warning("Redis rule store at %s is back; rules are current again", self.url)
                self._healthy, self.last_error, delay = True, None, 0.1
                if back and self.on_reconnect is not None:
                    self.on_reconnect()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
            except self._redis_errors as exc:
                if self._stop.is_set():
                    break
                if self._healthy:
                    log.error(
                        "Lost the Redis rule store at %s (%s); serving the last good rules "
                        "(version %s) and reconnecting",
                        self.url,
                        exc,
                        self.version,
                    )
                self._healthy, self.last_error = False, str(exc)
                self.reconnects += 1
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry_max_s)
            except Exception:  # a bad message must not kill the listener of a running service
                log.exception("Ignoring a rule change message that could not be applied")
            finally:
                try:
                    pubsub.close()
                except Exception:
                    log.debug("closing a Redis pubsub connection failed", exc_info=True)

    def _refuse_older(self, remote: int) -> None:
        """Redis came back with less than we saw (restarted empty, or from an old snapshot).
        Adopting it would serve nothing, or old rules, so the last good rules keep serving;
        the counter follows Redis, so whatever a publisher writes next is taken up."""
        with self._write_lock:
            log.warning(
                "Redis rule store at %s came back older than the rules served here (change %d, "
                "had %d): keeping version %s until the policy files are published again",
                self.url,
                remote,
                self._counter,
                self.version,
            )
            self._counter = remote
            self.stale_since = time.time()
            self._stale = True

    # -- writing ----------------------------------------------------------------------------
    def _write(
        self, puts: dict[str, tuple[Rule, Vectors]], dels: Sequence[str], reset: bool
    ) -> str:
        ids = list(puts) + list(dels)
        try:
            pipe = self._client.pipeline(transaction=True)
            if reset:
                pipe.delete(self._key("rules"), self._key("vecs"))
            for rid, (rule, vec) in puts.items():
                pipe.hset(self._key("rules"), rid, rule.model_dump_json())
                pipe.hset(self._key("vecs"), rid, np.asarray(vec, dtype=np.float32).tobytes())
            if dels:
                pipe.hdel(self._key("rules"), *dels)
                pipe.hdel(self._key("vecs"), *dels)
            pipe.incr(self._key("counter"))
            counter = int(pipe.execute()[-1])
            payload = {"counter": counter, "ids": None if reset else ids, "origin": self._origin}
            self._client.publish(self._key("changes"), json.dumps(payload))
        except self._redis_errors as exc:
            raise RuleStoreError(
                f"Redis at {self.url} is unreachable ({exc}), so the rule edit was not saved: "
                "retry once it is back."
            ) from None
        return str(counter)

    def add(self, rule: Rule, vector: Vectors) -> str:
        with self._write_lock:
            self._check_new(rule)
            v = self._check_vector(vector)
            counter = int(self._write({rule.id: (rule, v)}, [], reset=False))
            self._catch_up(counter, {rule.id: (rule, v)}, [])
            return self.version

    def replace(self, rule: Rule, vector: Vectors) -> str:
        with self._write_lock:
            self._check_known(rule.id)
            v = self._check_vector(vector)
            counter = int(self._write({rule.id: (rule, v)}, [], reset=False))
            self._catch_up(counter, {rule.id: (rule, v)}, [])
            return self.version

    def remove(self, rule_id: str) -> str:
        with self._write_lock:
            self._check_known(rule_id)
            counter = int(self._write({}, [rule_id], reset=False))
            self._catch_up(counter, {}, [rule_id])
            return self.version

    def replace_all(self, rules: Sequence[Rule], vectors: Vectors) -> str:
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(rules), self.dim)
        with self._write_lock:
            puts = {r.id: (r, v) for r, v in zip(rules, vecs, strict=True)}
            counter = int(self._write(puts, [], reset=True))
            if counter == self._counter + 1:
                self._swap(RuleIndex(rules, vecs, ivf_min_rows=self._ivf_min_rows))
                self._counter = counter
                self._stale = False
            else:
                self._full_reload()
            return self.version

    def _catch_up(
        self, counter: int, puts: dict[str, tuple[Rule, Vectors]], dels: Sequence[str]
    ) -> None:
        if counter == self._counter + 1 and not self._stale:
            self._swap(apply_edits(self._index, puts, dels, ivf_min_rows=self._ivf_min_rows))
            self._counter = counter
        else:  # someone else wrote in between: our snapshot is stale anyway
            self._full_reload()

    # -- health -----------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    def status(self) -> dict[str, Any]:
        return {
            "store": self.kind,
            "healthy": self._healthy,
            "rules": len(self._index),
            "version": self.version,
            "counter": self._counter,
            "lexical_ready": self._index.lexical_ready,
            "reconnects": self.reconnects,
            "stale_since": self.stale_since,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listeners.clear()
        try:
            self._client.close()
        except Exception:
            log.debug("closing the Redis client failed", exc_info=True)
