"""How many threads the embedded models compute with.

llama.cpp threads spin while they wait for each other, so on cores that other work shares,
more threads than free cores is slower, not faster (2 threads on 2 busy cores measured 3-10x
slower than 1). The default is therefore the number of *free* cores when the model starts:
the cores this process may run on, less those other processes keep busy, at least one.
"""

from __future__ import annotations

import os
import time

from pluralism.errors import ConfigError

THREADS_ENV = "PLURALISM_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def free_cores() -> int:
    """Cores other processes leave free: a 0.1 s look at /proc/stat where there is one (the
    load average lags a minute and counts work that has already ended), else the load
    average."""
    watch = CoreWatch()
    time.sleep(0.1)
    wanted = watch.wanted_threads(min_interval_s=0.05)
    if wanted is not None:
        return wanted
    cores = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def check_threads(n: int, source: str = "threads") -> int:
    """`n` if it is a possible thread count here, else a ConfigError naming the range."""
    cores = usable_cores()
    if not 1 <= n <= cores:
        raise ConfigError(
            f"{source}={n} is not a possible thread count here; use a whole number from 1 to "
            f"{cores} (the cores this process may use), or leave it unset to follow the free "
            f"cores."
        )
    return n


def resolve_threads(requested: int | None = None) -> int:
    """The thread count: `requested`, else $PLURALISM_THREADS, else the free cores."""
    if requested is not None:
        return check_threads(requested)
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ConfigError(
                f"{THREADS_ENV}={raw!r} is not a whole number; use one from 1 to "
                f"{usable_cores()}, or unset it to follow the free cores."
            ) from None
        return check_threads(n, THREADS_ENV)
    return free_cores()


def explicit_threads() -> bool:
    """Whether the operator fixed the thread count ($PLURALISM_THREADS)."""
    return bool(os.environ.get(THREADS_ENV, "").strip())


class CoreWatch:
    """How many cores *other* processes keep busy right now, for models that follow free cores.

    The load average lags a minute behind and counts this process's own work, so this reads the
    machine's busy time (/proc/stat) less this process's CPU time over the interval since the
    last look. Where /proc is missing it reports nothing and the thread count stays put.
    """

    def __init__(self) -> None:
        self._hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [float(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        times = os.times()
        return time.monotonic(), (sum(fields[:8]) - idle) / self._hz, times.user + times.system

    def others_busy(self, min_interval_s: float = 1.0) -> float | None:
        """Cores busy with other processes since the last call (None: too soon or unknown)."""
        now = self._sample()
        last = self._last
        if now is None or last is None or now[0] - last[0] < min_interval_s:
            return None
        self._last = now
        wall = now[0] - last[0]
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / wall)

    def wanted_threads(self, min_interval_s: float = 1.0) -> int | None:
        """The free cores now, or None when it is too soon to tell."""
        busy = self.others_busy(min_interval_s)
        if busy is None:
            return None
        cores = usable_cores()
        return max(1, min(cores, int(cores - busy + 0.5)))
