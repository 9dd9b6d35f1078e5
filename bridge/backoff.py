"""Exponential backoff with a cap and jitter, shared by every reconnect loop.

`Backoff.next()` returns the wait before the next attempt: the current step drawn from
`[step * (1 - jitter), step]`, so a wait never exceeds `maximum`; the step then
doubles up to `maximum`. `reset()` starts again from `initial` after a success.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: float = 0.5,
        factor: float = 2.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter}")
        if factor < 1.0:
            raise ValueError(f"backoff factor must be at least 1, got {factor}")
        self.initial = initial
        self.maximum = maximum
        self._jitter = jitter
        self._factor = factor
        self._uniform = uniform
        self._step = initial
        self.attempts = 0

    @property
    def step(self) -> float:
        """The upper bound of the next wait."""
        return self._step

    def next(self) -> float:
        wait = (
            self._step
            if self._jitter == 0
            else self._uniform(self._step * (1.0 - self._jitter), self._step)
        )
        self._step = min(self._step * self._factor, self.maximum)
        self.attempts += 1
        return wait

    def reset(self) -> None:
        self._step = self.initial
        self.attempts = 0
