"""Micro-batching: concurrent requests that arrive within a few milliseconds are served by one call.

Encoding one query with a transformer costs nearly as much as encoding sixteen (the fixed cost of a
forward pass dominates on CPU), so a server under concurrent load gains throughput by joining
queries. :class:`MicroBatcher` does that for any function of a list: callers ``await
submit(key, item)``; items with the same ``key`` are joined and ``fn(key, items)`` runs once on a
worker thread, each caller getting its own result.

At most ``max_concurrency`` batches run (or wait to run) at once. While a slot is free an item
starts a batch at once, joined only by the items submitted in the same event-loop turn, so a lone
request never waits; while every slot is busy, items are collected until ``max_batch`` of them wait
or ``max_wait_ms`` has passed since the first, and are joined into the next batch. The batch size so
grows with the load by itself (the "continuous batching" of inference servers). Measured on the
dense scifact service (benchmarks/reports/service.md): waiting 2 ms for company even when idle cost
a single client 3.5 ms at p50.

Hand-written because the libraries that do this (Triton, Ray Serve's ``@serve.batch``, TorchServe)
are whole serving stacks; this is ~100 lines of asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import anyio.to_thread

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Join concurrent ``submit`` calls with the same key into one ``fn(key, items)`` call.

    Args:
        fn: ``fn(key, items) -> results``, one result per item, run on a worker thread.
        max_batch: the most items in one call.
        max_wait_ms: how long the first item of a batch waits for company while every slot is busy.
        max_concurrency: how many calls may run (or wait for a thread) at once.
        on_batch: called with the size of each batch (e.g. to record a metric).

    When ``fn`` raises for a batch of several items, each item is retried on its own, so one bad
    item fails only its own request.
    """

    def __init__(
        self,
        fn: Callable[[Hashable, list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_concurrency: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_concurrency = max_concurrency
        self.on_batch = on_batch
        self._pending: dict[Hashable, list[tuple[T, asyncio.Future]]] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def submit(self, key: Hashable, item: T) -> R:
        """Queue ``item`` under ``key`` and wait for its result (or the exception for it)."""
        if self._closed:
            raise RuntimeError("the micro-batcher is closed (the server is shutting down)")
        loop = asyncio.get_running_loop()
        if self._slots is None:  # created lazily, on the loop that uses it
            self._slots = asyncio.Semaphore(self.max_concurrency)
        future: asyncio.Future = loop.create_future()
        queue = self._pending.setdefault(key, [])
        queue.append((item, future))
        if len(queue) >= self.max_batch or (
            key not in self._timers and len(self._tasks) < self.max_concurrency
        ):
            self._start(key)
        elif key not in self._timers:
            self._timers[key] = loop.call_later(self.max_wait, self._start, key)
        return await future

    def _start(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        assert self._slots is not None
        async with self._slots:
            queue = self._pending.get(key)
            if not queue:
                return  # an earlier run took these items while this one waited for a slot
            batch, rest = queue[: self.max_batch], queue[self.max_batch :]
            if rest:
                self._pending[key] = rest
                if key not in self._timers:
                    self._start(key)
            else:
                del self._pending[key]
            live = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled callers
            if not live:
                return
            if self.on_batch is not None:
                self.on_batch(len(live))
            items = [item for item, _ in live]
            try:
                results = await anyio.to_thread.run_sync(self._call, key, items)
            except BaseException as exc:  # noqa: BLE001 - handed to the callers, never swallowed
                if len(live) > 1 and isinstance(exc, Exception):
                    await self._one_by_one(key, live)
                else:
                    _fail(live, exc)
                return
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def _call(self, key: Hashable, items: list[T]) -> Sequence[R]:
        results = self.fn(key, items)
        if len(results) != len(items):
            raise RuntimeError(f"batched function returned {len(results)} results for {len(items)} items")
        return results

    async def _one_by_one(self, key: Hashable, live: list[tuple[T, asyncio.Future]]) -> None:
        for item, fut in live:
            if fut.done():
                continue
            try:
                (result,) = await anyio.to_thread.run_sync(self._call, key, [item])
            except Exception as exc:  # noqa: BLE001 - the caller receives it
                _fail([(item, fut)], exc)
            else:
                if not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        """Stop accepting items, run what is queued, and wait for running batches."""
        self._closed = True
        for key in list(self._timers):
            self._start(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000.0,
            "max_concurrency": self.max_concurrency,
        }

    def stats(self) -> dict[str, Any]:
        return {"pending": sum(len(q) for q in self._pending.values()), "running": len(self._tasks)}


def _fail(batch: list[tuple[Any, asyncio.Future]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
