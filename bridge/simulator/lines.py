"""Sans-IO splitting of the host's byte stream into AT command lines."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.simulator.replies import MAX_LINE


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A command line overflowed the input buffer; `dropped` bytes were discarded."""

    dropped: int


class CommandSplitter:
    """Cut command lines at CR (V.25ter S3); LF around them and empty lines are ignored.

    The buffer never holds more than `max_line` bytes: the rest of an over-long line is
    discarded up to its CR, which then yields one `LineTooLong`.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._buffer = b""
        self._dropped = 0

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        pieces = (self._buffer + data).split(b"\r")
        rest = pieces.pop()
        events: list[bytes | LineTooLong] = []
        for piece in pieces:
            if self._dropped:
                events.append(LineTooLong(self._dropped + len(piece)))
                self._dropped = 0
                continue
            line = piece.strip(b"\n")
            if len(line) > self._max_line:
                events.append(LineTooLong(len(line)))
            elif line:
                events.append(line)
        if len(rest) > self._max_line or self._dropped:
            self._dropped += len(rest)
            rest = b""
        self._buffer = rest
        return events

    def reset(self) -> None:
        self._buffer = b""
        self._dropped = 0
