"""Prometheus metrics of one application instance, in a registry of its own.

A registry per app (not the process-global default) lets tests and several apps in one process
count separately. With ``--workers N`` each worker process reports its own figures; scrape each
replica (they are labelled by the scrape target), or sum them in PromQL.

The pipeline's own metrics (:mod:`cairn.ops.telemetry`) live in the registry of the
:class:`~cairn.assistant.Cairn` that serves the requests; :meth:`Metrics.include` exposes them here
too, so one scrape of ``/metrics`` returns both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cairn_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cairn_http_request_duration_seconds",
            "Time to the end of the response body (streams included).",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("cairn_http_requests_in_flight", "Requests being served.", registry=self.registry)
        self.rate_limited = Counter(
            "cairn_rate_limited", "Requests refused by the per-principal rate limit.", registry=self.registry
        )
        self.generating = Gauge("cairn_generations_running", "Answers being generated.", registry=self.registry)
        self.queued = Gauge("cairn_generations_waiting", "Answers waiting for a slot.", registry=self.registry)
        self._included: list[_Included] = []

    def watch_generations(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.generating.set_function(running)
        self.queued.set_function(waiting)

    def include(self, registry: CollectorRegistry) -> None:
        """Expose the metrics of ``registry`` (e.g. ``Cairn.telemetry.registry``) here as well; idempotent."""
        if registry is self.registry or any(c.source is registry for c in self._included):
            return
        collector = _Included(registry)
        self.registry.register(collector)  # refuses a metric name both registries define
        self._included.append(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Included:
    """A collector that reads another registry at each scrape."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()

    def describe(self) -> Iterable[Metric]:
        return self.source.collect()


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path: ids would explode the series)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watching_send)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
