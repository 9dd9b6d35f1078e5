"""A bounded TTL cache of answered request ids (sans-IO: the clock is injected).

An id answered less than `window` seconds ago is answered again from here when its
request is redelivered, instead of reaching the CoAP server a second time. At most
`max_entries` ids are kept; beyond that the oldest goes first, whatever its age.

At full rate the cache holds every answer of the window (tens of thousands), so an
entry carries no timestamp or wrapper of its own: entries live in time buckets of
1/`BUCKETS` of the window, and a whole bucket expires at once. An entry is therefore
remembered for at least `window` seconds and at most `window * (1 + 1/BUCKETS)`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

BUCKETS = 64


class _Bucket(Generic[V]):
    __slots__ = ("entries", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.entries: dict[str, V] = {}


class AnswerCache(Generic[V]):
    def __init__(
        self,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._span = window / BUCKETS
        self._max_entries = max_entries
        self._clock = clock
        # Oldest bucket first; an id is in at most one bucket.
        self._buckets: collections.deque[_Bucket[V]] = collections.deque()
        self._count = 0

    def __len__(self) -> int:
        self._expire()
        return self._count

    def get(self, request_id: str) -> V | None:
        self._expire()
        for bucket in reversed(self._buckets):
            value = bucket.entries.get(request_id)
            if value is not None:
                return value
        return None

    def put(self, request_id: str, value: V) -> None:
        if self._window <= 0 or self._max_entries <= 0:
            return
        self._expire()
        self._remove(request_id)
        now = self._clock()
        if not self._buckets or now - self._buckets[-1].started >= self._span:
            self._buckets.append(_Bucket(now))
        self._buckets[-1].entries[request_id] = value
        self._count += 1
        while self._count > self._max_entries:
            self._drop_oldest_entry()

    def _remove(self, request_id: str) -> None:
        for bucket in self._buckets:
            if bucket.entries.pop(request_id, None) is not None:
                self._count -= 1
                return

    def _drop_oldest_entry(self) -> None:
        oldest = self._buckets[0]
        del oldest.entries[next(iter(oldest.entries))]
        self._count -= 1
        if not oldest.entries:
            self._buckets.popleft()

    def _expire(self) -> None:
        # A bucket's newest entry is at most `span` younger than the bucket.
        horizon = self._clock() - self._window - self._span
        while self._buckets and (
            self._buckets[0].started <= horizon or not self._buckets[0].entries
        ):
            self._count -= len(self._buckets.popleft().entries)
