"""Opportunistic batching: concurrent calls share one pass through the engine.

One thread takes whatever requests are waiting, hands them to the engine as one batch (one platform
lookup, one online-store read, one model call for all of them) and answers each. A lone request waits for
nothing: it is a batch of one. Under load, requests pile up while a batch runs and the next batch is larger,
so the cost per request falls as the load rises. It also keeps the engine on a single thread.

An async caller (the service's handlers) awaits its answers on the event loop (:meth:`Batcher.asubmit`):
no thread of a pool is taken, and woken, per call.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], list[R | Exception]], *, max_batch: int = 256) -> None:
        self.run, self.max_batch = run, max_batch
        self.queue: queue.Queue[tuple[T, Future[R]]] = queue.Queue()
        threading.Thread(target=self._loop, name="rekindle-batcher", daemon=True).start()

    def _enqueue(self, items: list[T]) -> list[Future[R]]:
        futures: list[Future[R]] = []
        for item in items:
            f: Future[R] = Future()
            self.queue.put((item, f))
            futures.append(f)
        return futures

    async def asubmit(self, items: list[T], timeout: float | None = None) -> list[R | BaseException]:
        """:meth:`submit` for a caller on an event loop: awaits the answers without blocking the loop."""
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in self._enqueue(items)), return_exceptions=True)
        return list(await asyncio.wait_for(waiting, timeout))

    def submit(self, items: list[T], timeout: float | None = None) -> list[R | BaseException]:
        """The answers to ``items``, in order: each its result, or the exception deciding it raised."""
        futures = self._enqueue(items)
        out: list[R | BaseException] = []
        for f in futures:
            exc = f.exception(timeout)
            out.append(exc if exc is not None else f.result())
        return out

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            # a caller that gave up while queued (a client gone, a timeout) is dropped here, undecided; the
            # others' futures can no longer be cancelled, so answering them cannot fail
            batch = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                out = self.run([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every caller gets the error
                for _, f in batch:
                    f.set_exception(exc)
                continue
            for (_, f), result in zip(batch, out, strict=True):
                if isinstance(result, Exception):
                    f.set_exception(result)
                else:
                    f.set_result(result)
