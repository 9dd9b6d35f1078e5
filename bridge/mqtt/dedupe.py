"""A bounded TTL cache of answered request ids (sans-IO: the clock is injected).

An id answered less than `window` seconds ago is answered again from here when its
request is redelivered, instead of reaching the CoAP server a second time. At most
`max_entries` ids are kept; beyond that the oldest goes first, whatever its age.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class AnswerCache(Generic[V]):
    def __init__(
        self,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, V]] = collections.OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def get(self, request_id: str) -> V | None:
        self._expire()
        entry = self._entries.get(request_id)
        return None if entry is None else entry[1]

    def put(self, request_id: str, value: V) -> None:
        if self._window <= 0 or self._max_entries <= 0:
            return
        self._entries.pop(request_id, None)
        self._entries[request_id] = (self._clock(), value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        self._expire()

    def _expire(self) -> None:
        # Entries are in insertion order, so the expired ones are all at the front.
        horizon = self._clock() - self._window
        while self._entries:
            stamp, _ = next(iter(self._entries.values()))
            if stamp > horizon:
                break
            self._entries.popitem(last=False)
