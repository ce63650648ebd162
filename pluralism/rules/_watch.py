"""Hot reload of a policies directory, and the audit log of every rule change."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per log is assumed there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

AUDIT_SUFFIX = ".audit.jsonl"


def default_audit_path(root: Path, *, watch: bool) -> Path:
    """Where changes are logged when the caller names no file.

    A watched directory is a service's live policy set: its log sits beside it
    (`policies.audit.jsonl` next to `policies/`), where the operator looks. A one-shot load
    (the CLI, a library call) must not write into the policy
    directory, which may be a read-only install, so it logs under the user's state directory.
    """
    if watch:
        # Beside the directory, not in it: deploy tools replace the directory whole (rm -rf and
        # recreate, or a rename), which must not take the history with it.
        return root.parent / f"{root.name}{AUDIT_SUFFIX}"
    from platformdirs import user_state_path

    return user_state_path("pluralism") / "audit.jsonl"


class AuditLog:
    """Appends one JSON line per change: when, which files, which ids, the new version."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        record = {"when": now.isoformat(timespec="milliseconds"), **entry}
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a+b") as fh:
                    # Worker processes of one server all watch the same directory: under an
                    # exclusive lock, a change the previous line already recorded moments
                    # ago is the same change seen by another process, not a new one.
                    _lock_file(fh)
                    if _same_change(_last_line(fh), entry, now):
                        return
                    fh.write((line + "\n").encode("utf-8"))
            except OSError as exc:
                # The change itself already happened; losing the log line must not undo it.
                log.error(
                    "Could not append to the rule audit log %s (%s): check it is writable",
                    self.path,
                    exc,
                )

    def read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


_SAME_CHANGE_S = 10.0


def _lock_file(fh: Any) -> None:
    if fcntl is not None:  # the lock is released when the file closes
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def _last_line(fh: Any) -> bytes:
    size = fh.seek(0, 2)
    fh.seek(max(size - 65536, 0))
    lines = fh.read().rstrip(b"\n").rsplit(b"\n", 1)
    return bytes(lines[-1])


def _same_change(last: bytes, entry: dict[str, Any], now: datetime) -> bool:
    try:
        previous = json.loads(last)
        when = datetime.fromisoformat(previous.pop("when"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return previous == entry and abs((now - when).total_seconds()) < _SAME_CHANGE_S


class _Ended:
    """A stop event for watchfiles: set when the watcher closes or the directory is replaced."""

    def __init__(self, stop: threading.Event, directory: Path, identity: tuple[int, int]) -> None:
        self._stop, self._directory, self._identity = stop, directory, identity

    def is_set(self) -> bool:
        return self._stop.is_set() or _identity(self._directory) != self._identity


def _identity(directory: Path) -> tuple[int, int] | None:
    """Which directory the path names now (device, inode), following symlinks; None if none."""
    try:
        st = directory.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _root_or_policy_file(roots: frozenset[str], change: object, path: str) -> bool:
    return path in roots or _is_policy_file(change, path)


def _is_policy_file(_change: object, path: str) -> bool:
    name = Path(path).name
    return not name.startswith(".") and name.endswith((".yaml", ".yml"))


class PolicyWatcher:
    """Calls `on_change(files)` from a background thread whenever policy files change.

    A burst of saves (an editor writing a temp file, then renaming) arrives as one call thanks
    to watchfiles' debounce. `close()` stops the thread within `poll_ms`.
    """

    def __init__(
        self,
        directory: str | Path,
        on_change: Callable[[list[str]], None],
        *,
        debounce_ms: int = 200,
        poll_ms: int = 200,
    ) -> None:
        self.directory = Path(directory)
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rules-watch", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=5)

    def _run(self) -> None:
        from watchfiles import watch

        watched: tuple[int, int] | None = None
        gone = False
        while not self._stop.is_set():
            identity = _identity(self.directory)
            if identity is None:  # gone, perhaps mid-swap: the old rules keep serving
                gone = True
                self._ready.set()
                self._stop.wait(self._poll_ms / 1000)
                continue
            # Replaced whole (rm -rf and recreate, a rename, a symlink swap): the OS watch was on
            # the old directory, so the new one is read in full once its own watch is in place
            # (before, a file written in between would be seen by neither). A directory that
            # was gone counts even with the same inode number: file systems reuse them.
            replaced = gone or (watched is not None and identity != watched)
            gone = False
            if replaced:
                log.warning(
                    "%s was replaced; reloading it and watching the new one", self.directory
                )
            watched = identity
            # watchfiles asks its stop event every 50 ms, even when the OS has nothing to
            # report (a deleted directory's watch goes silent for good): asking it whether the
            # path still names the directory being watched ends the watch on a replacement.
            ended = _Ended(self._stop, self.directory, identity)
            # The directory's own deletion is reported too: a delete and re-create quicker than
            # the stop event's look would otherwise leave a watch on a directory that is gone.
            roots = frozenset({str(self.directory), str(self.directory.resolve())})
            try:
                for changes in watch(
                    self.directory,
                    watch_filter=partial(_root_or_policy_file, roots),
                    debounce=self._debounce_ms,
                    rust_timeout=self._poll_ms,
                    yield_on_timeout=True,
                    stop_event=ended,
                    raise_interrupt=False,
                ):
                    # The first (possibly empty) yield means the OS watch is in place.
                    self._ready.set()
                    if replaced:
                        replaced = False
                        self._on_change([])
                    elif changes:
                        self._on_change(sorted({p for _, p in changes if p not in roots}))
                    if any(p in roots for _, p in changes):
                        gone = True  # the directory itself went: watch whatever is there now
                        break
            except Exception as exc:  # a vanished directory or a failing reload must not end it
                self._ready.set()
                log.error("Watching %s failed (%s); retrying in 1 s", self.directory, exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
