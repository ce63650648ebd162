"""Prometheus metrics, on a registry per app so two proxies in one process never mix counts.

With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set, as `pluralism serve --workers`
does), values live in files per process and `/metrics` of any worker reports their sum.
"""

from __future__ import annotations

import os
import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Sub-millisecond buckets at the low end: the proxy's own overhead lives there.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# `drafts[SmolLM2]` and `drafts[gpt-4o]` are one step; the model is a label of its own.
_STEP = re.compile(r"^([a-z_]+)(?:\[(.*)\])?$")
_STEPS = frozenset({"route", "recall", "situate", "drafts", "score", "aggregate", "answer"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pluralism_requests", "Chat completion requests.", ["mode", "status"], registry=r
        )
        self.errors = Counter("pluralism_errors", "Error replies by code.", ["code"], registry=r)
        self.latency = Histogram(
            "pluralism_request_seconds",
            "Whole request latency.",
            ["mode", "stream"],
            buckets=_SLOW,
            registry=r,
        )
        self.overhead = Histogram(
            "pluralism_overhead_seconds",
            "Request time not spent waiting on models.",
            ["mode"],
            buckets=_FAST,
            registry=r,
        )
        self.steps = Histogram(
            "pluralism_step_seconds",
            "Time per step of the flow.",
            ["step", "model"],
            buckets=_SLOW,
            registry=r,
        )
        self.upstream = Histogram(
            "pluralism_upstream_seconds",
            "Latency of each call to the upstream (meta) model.",
            buckets=_SLOW,
            registry=r,
        )
        self.first_token = Histogram(
            "pluralism_time_to_first_token_seconds",
            "Time from request to the first streamed token.",
            ["mode"],
            buckets=_SLOW,
            registry=r,
        )
        self.in_flight = Gauge(
            "pluralism_requests_in_flight",
            "Requests being answered.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._counts: dict[tuple[str, str], Any] = {}
        self._latency: dict[tuple[str, bool], tuple[Any, Any]] = {}
        self._steps: dict[str, Any] = {}

    # Labelled children are looked up once and cached: `labels()` costs more than the
    # observation itself, and the proxy records several per request.
    def count(self, mode: str, status: str) -> None:
        key = (mode, status)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self.requests.labels(mode, status)
        child.inc()

    def observe_request(self, mode: str, stream: bool, seconds: float, overhead_s: float) -> None:
        key = (mode, stream)
        pair = self._latency.get(key)
        if pair is None:
            pair = self._latency[key] = (
                self.latency.labels(mode, "true" if stream else "false"),
                self.overhead.labels(mode),
            )
        pair[0].observe(seconds)
        pair[1].observe(overhead_s)

    def observe_steps(self, timings: dict[str, float]) -> None:
        for name, ms in timings.items():
            child = self._steps.get(name, False)
            if child is False:
                m = _STEP.match(name)
                ok = m is not None and m.group(1) in _STEPS and len(self._steps) < 1000
                child = self.steps.labels(m.group(1), m.group(2) or "") if m and ok else None
                self._steps[name] = child
            if child is not None:
                child.observe(ms / 1000)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
