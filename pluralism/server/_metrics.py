"""Prometheus metrics, on a registry per app so two proxies in one process never mix counts."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
            "pluralism_requests_in_flight", "Requests being answered.", registry=r
        )

    def observe_steps(self, timings: dict[str, float]) -> None:
        for name, ms in timings.items():
            m = _STEP.match(name)
            if m is None or m.group(1) not in _STEPS:
                continue
            self.steps.labels(m.group(1), m.group(2) or "").observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
