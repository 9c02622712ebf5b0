"""A readers-writer lock that model objects can carry: many inference calls at once, `.to()` alone.

Why: `.to(dtype/device)` swaps every parameter's data one by one. A forward running in another thread at that
moment reads a mix of old and new weights (oneDNN then fails with "could not create a primitive descriptor",
or worse, computes with half-converted weights). With this lock held shared by every call and exclusively by
`.to()` / `.cuda()` / `.half()` (nn.Module._apply), the conversion waits for calls in flight and later calls
wait for it. Calls never wait for each other. Copies and pickles of a model get a fresh lock.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class SharedExclusiveLock:
    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> depth (calls may nest: a head calling its encoder)
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0  # new calls wait while a conversion waits: it cannot starve

    @contextmanager
    def shared(self):
        me = threading.get_ident()
        with self._cond:
            if me not in self._readers:  # a nested call of a thread already inside never waits
                while self._writer != me and (self._writer is not None or self._writers_waiting):
                    self._cond.wait()
            self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                if self._readers[me] == 1:
                    del self._readers[me]
                    self._cond.notify_all()
                else:
                    self._readers[me] -= 1

    @contextmanager
    def exclusive(self, what: str = "this operation"):
        me = threading.get_ident()
        with self._cond:
            if me in self._readers:
                raise RuntimeError(
                    f"{what} was called from inside a forward of the same model (same "
                    "thread); convert the model before or after the call"
                )
            self._writers_waiting += 1
            try:
                while self._writer not in (None, me) or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
            self._writer_depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    self._writer = None
                    self._cond.notify_all()

    def __deepcopy__(self, memo):
        return SharedExclusiveLock()

    def __reduce__(self):
        return (SharedExclusiveLock, ())
