"""Hot reload of a policies directory, and the audit log of every rule change."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AUDIT_FILE = ".audit.jsonl"


def default_audit_path(root: Path, *, watch: bool) -> Path:
    """Where changes are logged when the caller names no file.

    A watched directory is a service's live policy set: its log sits beside the files, where the
    operator looks. A one-shot load (the CLI, a library call) must not write into the policy
    directory, which may be a read-only install, so it logs under the user's state directory.
    """
    if watch:
        return root / AUDIT_FILE
    from platformdirs import user_state_path

    return user_state_path("pluralism") / "audit.jsonl"


class AuditLog:
    """Appends one JSON line per change: when, which files, which ids, the new version."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        record = {"when": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
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

        while not self._stop.is_set():
            try:
                for changes in watch(
                    self.directory,
                    watch_filter=_is_policy_file,
                    debounce=self._debounce_ms,
                    rust_timeout=self._poll_ms,
                    yield_on_timeout=True,
                    stop_event=self._stop,
                    raise_interrupt=False,
                ):
                    # The first (possibly empty) yield means the OS watch is in place.
                    self._ready.set()
                    if changes:
                        self._on_change(sorted({p for _, p in changes}))
            except (
                Exception
            ) as exc:  # a vanished directory or a failing reload must not end watching
                self._ready.set()
                log.error("Watching %s failed (%s); retrying in 1 s", self.directory, exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
