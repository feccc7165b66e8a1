"""MicroBatcher: joins concurrent submits, respects max_batch, isolates a failing item.

The batched function here is a small real function that records its calls (the batcher is the code
under test; nothing of it is mocked)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from distilir_index.service.batching import MicroBatcher


class Recorder:
    """fn(key, items) -> [(key, item * 2)], recording each call's batch."""

    def __init__(self, fail_on: object = None) -> None:
        self.calls: list[tuple[object, list]] = []
        self.lock = threading.Lock()
        self.fail_on = fail_on

    def __call__(self, key, items):
        with self.lock:
            self.calls.append((key, list(items)))
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on!r}")
        return [(key, item * 2) for item in items]


def test_concurrent_submits_are_joined_into_one_call():
    fn = Recorder()
    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher(fn, max_batch=64, max_wait_ms=50, on_batch=sizes.append)
        # All 10 submits are queued before the loop runs the timer: exactly one call must follow.
        results = await asyncio.gather(*(batcher.submit("a", i) for i in range(10)))
        await batcher.aclose()
        return results

    results = asyncio.run(main())
    assert results == [("a", 2 * i) for i in range(10)]
    assert len(fn.calls) == 1 and fn.calls[0] == ("a", list(range(10)))
    assert sizes == [10]


def test_keys_are_batched_apart_and_max_batch_is_respected():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=20, max_concurrency=1)
        jobs = [batcher.submit("a", i) for i in range(10)] + [batcher.submit("b", i) for i in range(3)]
        results = await asyncio.gather(*jobs)
        await batcher.aclose()
        return results

    results = asyncio.run(main())
    assert results == [("a", 2 * i) for i in range(10)] + [("b", 2 * i) for i in range(3)]
    assert all(len(items) <= 4 for _, items in fn.calls)
    assert sorted(i for key, items in fn.calls if key == "a" for i in items) == list(range(10))
    assert [items for key, items in fn.calls if key == "b"] == [[0, 1, 2]]
    assert all(len({key}) == 1 for key, _ in fn.calls)


def test_one_failing_item_fails_only_its_own_request():
    fn = Recorder(fail_on=3)

    async def main():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=10)
        results = await asyncio.gather(*(batcher.submit("k", i) for i in range(6)), return_exceptions=True)
        await batcher.aclose()
        return results

    results = asyncio.run(main())
    assert isinstance(results[3], ValueError) and "bad item 3" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [("k", 2 * i) for i in (0, 1, 2, 4, 5)]
    # one joined call that failed, then one call per item
    assert fn.calls[0] == ("k", list(range(6))) and len(fn.calls) == 1 + 6


def test_a_cancelled_caller_does_not_break_the_batch():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=30)
        doomed = asyncio.ensure_future(batcher.submit("k", 99))
        kept = [asyncio.ensure_future(batcher.submit("k", i)) for i in range(3)]
        await asyncio.sleep(0)
        doomed.cancel()
        results = await asyncio.gather(*kept)
        await batcher.aclose()
        return results

    assert asyncio.run(main()) == [("k", 0), ("k", 2), ("k", 4)]
    assert fn.calls == [("k", [0, 1, 2])]  # the cancelled item was dropped before the call


def test_results_of_the_wrong_length_are_an_error():
    async def main():
        batcher = MicroBatcher(lambda key, items: items[:-1], max_batch=8, max_wait_ms=1)
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await batcher.submit("k", 1)
        await batcher.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await batcher.submit("k", 1)

    asyncio.run(main())


def test_config_dict():
    batcher = MicroBatcher(Recorder(), max_batch=4, max_wait_ms=2.5, max_concurrency=3)
    assert batcher.get_config_dict() == {"max_batch": 4, "max_wait_ms": 2.5, "max_concurrency": 3}


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}, {"max_concurrency": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MicroBatcher(lambda k, items: items, **kwargs)


def test_a_lone_item_does_not_wait_for_the_window():
    """With a slot free the batch starts at once: a 10 s window must not delay a single request."""

    async def main():
        batcher = MicroBatcher(Recorder(), max_batch=64, max_wait_ms=10_000)
        result = await asyncio.wait_for(batcher.submit("k", 1), timeout=5)
        await batcher.aclose()
        return result

    assert asyncio.run(main()) == ("k", 2)


def test_items_arriving_while_every_slot_is_busy_are_joined():
    release = threading.Event()
    fn = Recorder()

    def slow(key, items):
        release.wait(timeout=30)
        return fn(key, items)

    async def main():
        batcher = MicroBatcher(slow, max_batch=64, max_wait_ms=5, max_concurrency=1)
        first = asyncio.ensure_future(batcher.submit("k", 0))
        await asyncio.sleep(0.05)  # the first batch is running and holds the only slot
        later = [asyncio.ensure_future(batcher.submit("k", i)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *later)
        await batcher.aclose()
        return results

    assert asyncio.run(main()) == [("k", 2 * i) for i in range(6)]
    assert [items for _, items in fn.calls] == [[0], [1, 2, 3, 4, 5]]
