"""Sans-IO pacing: a token bucket for the serial line's byte rate."""

from __future__ import annotations

# Tokens saved up for this many seconds of line time at most: small enough that short
# transfers are paced (no large initial burst), large enough that a late wake-up of the
# event loop does not lose line time. Waiters wake when a quarter of it is available.
BURST_SECONDS = 0.02


class TokenBucket:
    """`rate` bytes per second, at most `burst` bytes saved up while idle.

    Fractional tokens are kept, so the long-run rate is exact whatever the wake-up
    jitter of the caller.
    """

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, rate * BURST_SECONDS) if burst is None else max(1.0, burst)
        self._tokens = self.burst
        self._last = now

    def available(self, now: float) -> int:
        """Whole bytes that may go now."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return int(self._tokens)

    def consume(self, count: int) -> None:
        self._tokens -= count

    def start_after_idle(self, now: float) -> None:
        """The line had nothing to carry until `now`: no credit for that time.

        A UART cannot save up idle time: bytes handed to an idle line complete one byte
        time apart from now on. Credit only builds up while bytes wait (a late wake-up
        of the event loop), which is what the burst is for.
        """
        self.available(now)
        self._tokens = min(self._tokens, 0.0)

    def delay_for(self, wanted: int) -> float:
        """Seconds until min(wanted, burst/4) whole bytes are available (after `available`)."""
        needed = min(float(wanted), max(1.0, float(int(self.burst / 4)))) - self._tokens
        return max(0.0, needed / self.rate)


def baud_to_bytes_per_second(baud: int) -> float:
    """8N1 framing: 10 bit times per byte."""
    return baud / 10.0
