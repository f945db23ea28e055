"""Prometheus metrics of one server (a registry of its own, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)


class ServeMetrics:
    """The counters ``GET /metrics`` exposes (all names start with ``reasonrank_``).

    - ``requests_total{endpoint, code}``: finished requests (code 499: the client went away first)
    - ``request_duration_seconds{endpoint}``: time from admission to response, rerank endpoints only
    - ``queue_depth``: rerank requests admitted and not finished; ``queue_limit``: the bound (past it: 429)
    - ``documents_total``, ``windows_total``: documents reranked and windows the model ranked
    - ``window_seconds``: model time per window
    - ``tokens_total{kind}``: prompt and output tokens, where the backend reports them
    - from the reranker's scheduler (:attr:`Reranker.stats`), read at each scrape: ``backend_calls_total``
      (batches for batch-only backends, single requests for streaming ones), ``scheduler_windows_total{state}``
      (sent, completed, failed, cancelled), ``windows_in_flight``, ``windows_per_backend_call`` (the batching
      gain: windows sent / backend calls, over the server's life)
    """

    def __init__(self, registry: CollectorRegistry | None = None, stats: Any = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("reasonrank_requests", "Finished requests", ["endpoint", "code"], registry=r)
        self.duration = Histogram(
            "reasonrank_request_duration_seconds",
            "Rerank request latency (admission to response)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("reasonrank_queue_depth", "Rerank requests admitted and not finished", registry=r)
        self.queue_limit = Gauge("reasonrank_queue_limit", "Most rerank requests admitted at once", registry=r)
        self.documents = Counter("reasonrank_documents", "Documents reranked", registry=r)
        self.windows = Counter("reasonrank_windows", "Windows ranked by the model", registry=r)
        self.window_seconds = Histogram(
            "reasonrank_window_seconds", "Model time per window", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter("reasonrank_tokens", "Model tokens", ["kind"], registry=r)
        if stats is not None:
            r.register(_SchedulerCollector(stats))


class _SchedulerCollector(Collector):
    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield CounterMetricFamily(
            "reasonrank_backend_calls", "Backend calls (batches, or single requests of streaming backends)",
            value=s.backend_calls,
        )  # fmt: skip
        windows = CounterMetricFamily(
            "reasonrank_scheduler_windows", "Windows by what became of them", labels=["state"]
        )
        for state in ("sent", "completed", "failed", "cancelled"):
            windows.add_metric([state], getattr(s, f"windows_{state}"))
        yield windows
        yield GaugeMetricFamily("reasonrank_windows_in_flight", "Windows sent and not back", value=s.in_flight)
        yield GaugeMetricFamily(
            "reasonrank_windows_per_backend_call", "Windows sent per backend call (batching gain)",
            value=s.windows_per_call,
        )  # fmt: skip
