"""Dynamic batcher: requests queue up; one model worker thread takes as many as fit a real-token budget and a
request count, runs them (grouped by kind, so requests with the same parameters share one pipeline call and
its packed encoder passes) and hands every request its own results.

Why a thread and not an executor per call: one worker owns the model, so batches never run concurrently
(they would only fight for the same cores) and the event loop stays free to accept, parse and tokenize the
next requests while a batch runs -- those form the next batch (continuous batching, as TEI does).

Failure isolation: when a group's call raises, each of its requests is run again on its own, so only the
request that causes the error fails. A request whose client went away (its future cancelled) is skipped
when the batch is formed, and a result for a cancelled future is dropped: nothing waits on it, nothing leaks.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metrics

# run(key, items) -> one result per item; `key` identifies the kind of work and its parameters.
RunFn = Callable[[Hashable, list], list]


@dataclass(eq=False)
class Job:
    key: Hashable
    items: list
    tokens: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)


class BatcherClosed(RuntimeError):
    pass


class DynamicBatcher:
    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_tokens: int,
        max_batch_requests: int,
        max_wait_ms: float = 0.0,
        metrics: Metrics | None = None,
        on_worker_start: Callable[[], None] | None = None,
    ):
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._on_worker_start = on_worker_start
        self._thread = threading.Thread(target=self._worker, name="distilbert-fast-batcher", daemon=True)
        self._thread.start()

    # -- event-loop side -------------------------------------------------------------------------------------
    async def submit(self, key: Hashable, items: list, tokens: int) -> list:
        """Queue `items` (run together, as one request) and wait for their results."""
        loop = asyncio.get_running_loop()
        job = Job(key, items, max(int(tokens), 1), loop.create_future(), loop)
        with self._cond:
            if self._closing:
                raise BatcherClosed("the server is shutting down")
            self._queue.append(job)
            self._set_depth()
            self._cond.notify()
        return await job.future

    def queue_depth(self) -> int:
        return len(self._queue)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with drain, finish everything queued first. Blocks until the worker ends."""
        with self._cond:
            self._closing = True
            if not drain:
                while self._queue:
                    job = self._queue.popleft()
                    _deliver(job, exception=BatcherClosed("the server shut down"))
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- worker side -----------------------------------------------------------------------------------------
    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))

    def _next_batch(self) -> list[Job] | None:
        """Block for the first live job, then take more while they fit; None when closed and drained."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].future.cancelled():
                    self._queue.popleft()
                if self._queue:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            batch: list[Job] = []
            tokens = 0
            deadline = self._queue[0].enqueued + self.max_wait
            while len(batch) < self.max_batch_requests:
                if not self._queue:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or self._closing:
                        break
                    self._cond.wait(remaining)
                    continue
                job = self._queue[0]
                if job.future.cancelled():
                    self._queue.popleft()
                    continue
                if batch and tokens + job.tokens > self.max_batch_tokens:
                    break  # stays first in line for the next batch
                batch.append(self._queue.popleft())
                tokens += job.tokens
            self._set_depth()
            return batch

    def _worker(self) -> None:
        if self._on_worker_start is not None:
            self._on_worker_start()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            start = time.perf_counter()
            if len(batch) == 1:
                self._run_group(batch[0].key, batch)
            else:
                groups: dict[Hashable, list[Job]] = {}
                for job in batch:
                    groups.setdefault(job.key, []).append(job)
                for key, jobs in groups.items():
                    self._run_group(key, jobs)
            # the bookkeeping after the results are on their way: it is not on any request's latency path
            if self.metrics is not None:
                m, tokens = self.metrics, sum(j.tokens for j in batch)
                m.inference_duration.observe(time.perf_counter() - start)
                for job in batch:
                    m.queue_duration.observe(start - job.enqueued)
                m.batch_requests.observe(len(batch))
                m.batch_tokens.observe(tokens)
                m.tokens.inc(tokens)

    def _run_group(self, key: Hashable, jobs: list[Job]) -> None:
        items = [x for job in jobs for x in job.items]
        try:
            results = self._run(key, items)
            if len(results) != len(items):
                raise RuntimeError(f"internal error: {len(results)} results for {len(items)} inputs")
        except BaseException as e:  # noqa: BLE001 - any failure must reach the waiting requests
            if self.metrics is not None:
                self.metrics.batch_failures.inc()
            if len(jobs) == 1:
                _deliver(jobs[0], exception=e)
            else:  # find the culprit: every request on its own
                for job in jobs:
                    self._run_group(key, [job])
            return
        pos = 0
        for job in jobs:
            n = len(job.items)
            _deliver(job, results=results[pos : pos + n])
            pos += n


def _deliver(job: Job, results: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            job.loop.call_soon_threadsafe(_fail, job.future, exception)
        else:
            job.loop.call_soon_threadsafe(_succeed, job.future, results)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _succeed(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():  # a client that disconnected cancelled it: drop the result
        fut.set_result(value)


def _fail(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
