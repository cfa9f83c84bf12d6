"""The batcher: concurrent callers, blocking or on an event loop, share passes through one function and each
gets its own answers, in order, with a failure where (and only where) its item failed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batcher import Batcher


class Doubler:
    """Doubles numbers; refuses negatives (that item's answer is the error); records each pass's size."""

    def __init__(self, delay: float = 0.0) -> None:
        self.passes: list[int] = []
        self.delay = delay

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.passes.append(len(items))
        time.sleep(self.delay)
        return [ValueError(f"negative {i}") if i < 0 else 2 * i for i in items]


def test_an_async_caller_gets_its_answers_in_order_and_only_its_own_errors() -> None:
    batcher = Batcher(Doubler())
    out = asyncio.run(batcher.asubmit([1, -2, 3]))
    assert out[0] == 2 and out[2] == 6
    assert isinstance(out[1], ValueError) and "negative -2" in str(out[1])


def test_concurrent_callers_on_an_event_loop_share_passes_and_do_not_mix_answers() -> None:
    work = Doubler(delay=0.02)  # a pass takes long enough for the others to queue behind it
    batcher = Batcher(work)

    async def many() -> list[list[int | BaseException]]:
        return await asyncio.gather(*(batcher.asubmit([i, 100 + i]) for i in range(40)))

    answers = asyncio.run(many())
    assert answers == [[2 * i, 2 * (100 + i)] for i in range(40)]
    assert sum(work.passes) == 80 and len(work.passes) < 40  # shared: fewer passes than callers


def test_blocking_and_async_callers_mix() -> None:
    batcher = Batcher(Doubler(delay=0.01))
    got: dict[int, list] = {}

    def blocking(i: int) -> None:
        got[i] = batcher.submit([i])

    threads = [threading.Thread(target=blocking, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    async_out = asyncio.run(batcher.asubmit(list(range(10, 20))))
    for t in threads:
        t.join()
    assert async_out == [2 * i for i in range(10, 20)] and got == {i: [2 * i] for i in range(10)}


def test_a_whole_pass_that_fails_fails_each_of_its_callers() -> None:
    def broken(items: list[int]) -> list[int | Exception]:
        raise RuntimeError("the log is down")

    batcher = Batcher(broken)
    out = asyncio.run(batcher.asubmit([1, 2]))
    assert all(isinstance(o, RuntimeError) and "the log is down" in str(o) for o in out)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(Batcher(Doubler(delay=0.5)).asubmit([1], timeout=0.05))


def test_a_caller_that_gives_up_while_queued_is_dropped_and_the_batcher_goes_on() -> None:
    """A client gone or timed out cancels its wait: its item is not decided, and later callers are answered
    (answering a cancelled future used to kill the batcher's thread, and every call after it hung)."""
    work = Doubler(delay=0.2)
    batcher = Batcher(work)

    async def scenario() -> tuple[list, list]:
        first = asyncio.ensure_future(batcher.asubmit([1]))
        await asyncio.sleep(0.05)  # the first pass is running
        gone = asyncio.ensure_future(batcher.asubmit([2]))
        await asyncio.sleep(0.01)
        gone.cancel()
        return await first, await asyncio.wait_for(batcher.asubmit([3]), 5)

    first, later = asyncio.run(scenario())
    assert first == [2] and later == [6]
    assert sum(work.passes) == 2  # the cancelled item was never decided
