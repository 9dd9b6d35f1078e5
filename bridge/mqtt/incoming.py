"""One PUBLISH received from the broker, with the acknowledgement it owes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IncomingMessage:
    """One PUBLISH received from the broker."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    # MQTT 5 request/response properties; None on MQTT 3.1.1 or when absent.
    response_topic: str | None
    correlation_data: bytes | None
    _ack: Callable[[], bool] = field(repr=False, compare=False)
    # When it arrived (time.monotonic): where the request's latency starts.
    received_at: float = field(default_factory=time.monotonic, compare=False)

    def ack(self) -> bool:
        """Send the PUBACK. False when the connection it came on is gone (it will be
        redelivered) — never raises."""
        return self._ack()
