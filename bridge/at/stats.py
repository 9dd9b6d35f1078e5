"""The AT port's counters, as read for health reporting; they only ever grow."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AtStats"]


@dataclass(slots=True)
class AtStats:
    # The line itself: bytes each way, complete lines, lines dropped for being too long.
    bytes_read: int = 0
    bytes_written: int = 0
    lines: int = 0
    overflows: int = 0
    reconnects: int = 0
    # Where lines went: URC handlers, or no one (boot lines, late replies, garbage).
    urcs: int = 0
    unsolicited: int = 0
    # Commands written; echoes of them seen (the driver reads a new echo as a modem reset).
    commands: int = 0
    echoes: int = 0
    timeouts: int = 0
    # Probes written to skip a reply that may still come after a timeout or reconnect.
    resyncs: int = 0
    handler_errors: int = 0
