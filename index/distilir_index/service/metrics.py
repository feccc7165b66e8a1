"""Prometheus metrics of the service (``GET /metrics``), kept in a registry per app.

Series (all prefixed ``distilir_``):

- ``http_requests_total{method, route, status}``: counter of finished requests.
- ``http_request_duration_seconds{method, route}``: histogram of the time to the response's end.
- ``http_requests_in_flight``: gauge.
- ``search_batch_size``: histogram of how many queries the micro-batcher joined per encoder call.
- ``index_documents{index, kind}``: gauge of documents per loaded index.
- ``index_reloads_total{index, outcome}``: counter of reloads (``ok`` / ``error``).

``route`` is the route template (``/v1/indexes/{name}/reload``), never the raw path, and ``method``
one of the standard HTTP methods or ``OTHER``, so a client (with or without the key) cannot create
unbounded label values; unmatched paths count as ``<unmatched>``.
Each app has its own ``CollectorRegistry`` so that several apps (tests, one process serving two
configurations) do not collide in prometheus_client's global registry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "ServiceMetrics"]

#: Latency buckets in seconds: loopback searches take a few ms, encoder batches tens of ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Methods counted under their own name; any other (``M0001XYZ``) counts as ``OTHER``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class ServiceMetrics:
    """The metric objects of one app, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "distilir_http_requests",
            "HTTP requests finished, by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "distilir_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "distilir_http_requests_in_flight", "Requests being served.", registry=self.registry
        )
        self.batch_size = Histogram(
            "distilir_search_batch_size",
            "Queries joined into one index call by the micro-batcher.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.documents = Gauge(
            "distilir_index_documents",
            "Documents in each loaded index.",
            ["index", "kind"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "distilir_index_reloads",
            "Index reloads, by outcome.",
            ["index", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    # Not routed (e.g. refused by the body limit before routing): match the templates ourselves.
    for candidate in routes:
        try:
            match, _ = candidate.matches(scope)
        except Exception:  # noqa: BLE001 - a route type that cannot match a bare scope
            continue
        if match == Match.FULL:
            return getattr(candidate, "path", "<unmatched>")
    return "<unmatched>"


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware, which buffers and breaks streaming) that counts
    requests and times them, outermost so that 401/413/422 answers are counted too."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        self.metrics.in_flight.inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = _route_template(self.routes, scope)
            method = scope.get("method", "GET")
            method = method if method in KNOWN_METHODS else "OTHER"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
