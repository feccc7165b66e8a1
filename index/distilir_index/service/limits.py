"""The cost of one request, bounded: per-route concurrency caps and a per-request time budget.

Without them a slow route queues without end: forty clients reranking 128 long documents each hold
forty threads for minutes, and every search behind them waits. :class:`RouteLimiter` runs a route's
work with two rules:

- **a cap per route** (``max_concurrent``): when that many requests of the route are already at
  work, the next one is answered at once with 429 and ``Retry-After`` instead of joining a queue;
- **a time budget** (``request_timeout_s``): a request whose work has not finished within it is
  answered with 503 and ``Retry-After``.

A thread cannot be stopped from outside, so work past its budget runs on to its end; it keeps its
slot until then, so requests that time out still count against the cap and cannot pile up threads
behind the client's back. A client that disconnects does not free its slot early either, for the same
reason.

Written here rather than taken from a rate-limit library (slowapi, limits): those count requests
per client per time window; what is bounded here is work in flight per route, released when the work
(not the response) ends.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from distilir_index.service.errors import Overloaded, TimedOut

__all__ = ["ROUTES", "RouteLimiter"]

T = TypeVar("T")

#: The routes with a cap (the keys of the ``max_concurrent`` setting).
ROUTES = ("search", "embeddings", "rerank", "reload")


class RouteLimiter:
    """Caps and a time budget for the routes in :data:`ROUTES` (see the module docstring).

    Args:
        max_concurrent: route -> most requests at work at once (a missing route has no cap).
        timeout_s: time budget of one request's work in seconds (None: no budget).
        retry_after_s: the ``Retry-After`` the 429 and 503 answers carry.
    """

    def __init__(
        self, max_concurrent: Mapping[str, int], timeout_s: float | None, retry_after_s: int = 1
    ) -> None:
        unknown = sorted(set(max_concurrent) - set(ROUTES))
        if unknown:
            raise ValueError(f"max_concurrent names unknown routes {unknown}; known: {list(ROUTES)}")
        self.caps = dict(max_concurrent)
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._busy = dict.fromkeys(ROUTES, 0)  # touched on the event loop only: no lock

    def busy(self, route: str) -> int:
        """Requests of ``route`` at work now (including those past their budget)."""
        return self._busy[route]

    async def run(self, route: str, work: Callable[[], Awaitable[T]], *, budget: bool = True) -> T:
        """Await ``work()`` under the route's cap and (unless ``budget=False``) the time budget."""
        cap = self.caps.get(route)
        if cap is not None and self._busy[route] >= cap:
            raise Overloaded(
                f"{self._busy[route]} {route} requests are already at work on this server (its cap, "
                f"setting max_concurrent[{route!r}] = {cap}); retry after {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self._busy[route] += 1
        task = asyncio.ensure_future(work())

        def release(_: Any) -> None:
            self._busy[route] -= 1

        task.add_done_callback(release)
        try:
            # shield: a timeout or a client gone cancels the wait, never the work holding the slot
            return await asyncio.wait_for(asyncio.shield(task), self.timeout_s if budget else None)
        except TimeoutError:
            task.add_done_callback(_consume)
            raise TimedOut(
                f"the {route} request did not finish within this server's time budget "
                f"({_seconds(self.timeout_s)}, setting request_timeout_s); make it smaller (fewer or "
                f"shorter texts, a smaller k) or retry after {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from None

    async def run_sync(self, route: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """:meth:`run` for a blocking function, on a worker thread."""
        return await self.run(route, lambda: run_in_threadpool(fn, *args, **kwargs))


def _consume(task: asyncio.Future[Any]) -> None:
    """Read the outcome of work whose caller gave up (no 'exception never retrieved' warnings)."""
    if not task.cancelled():
        task.exception()


def _seconds(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "none"
    return f"{value:g} s"
