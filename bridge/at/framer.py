"""Sans-IO line framer for an AT command port: bytes in, `Line`/`Overflow` events out.

CR and LF alike end a line and empty lines are skipped; a line longer than `max_line`
bytes is discarded as it streams past and reported once as an `Overflow`. Hot path:
the scanning is done by bytes methods in C.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_LINE", "Line", "LineFramer", "Overflow"]

DEFAULT_MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class Line:
    """One complete, non-empty line, without its terminator."""

    text: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """A line longer than the framer's limit was dropped; `dropped` is its length in bytes."""

    dropped: int


def _first_line_end(data: bytes) -> int:
    """Index of the first CR or LF in `data`, or -1."""
    cr = data.find(b"\r")
    lf = data.find(b"\n", 0, cr) if cr >= 0 else data.find(b"\n")
    return lf if lf >= 0 else cr


class LineFramer:
    """Split a byte stream into `Line` and `Overflow` events.

    Feeding the same bytes in any chunking yields the same events. At most `max_line`
    bytes are kept between feeds, whatever arrives.
    """

    __slots__ = ("_discarded", "_partial", "lines", "max_line", "overflows")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, not {max_line}")
        self.max_line = max_line
        self.lines = 0
        self.overflows = 0
        self._partial = b""
        # Bytes of the current overlong line already thrown away; -1 when not discarding.
        self._discarded = -1

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line (never more than `max_line`)."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[Line | Overflow]:
        """Consume `data`; return the events for every line it completes."""
        events: list[Line | Overflow] = []
        if self._discarded >= 0:
            end = _first_line_end(data)
            if end < 0:
                self._discarded += len(data)
                return events
            self._overflow(events, self._discarded + end)
            self._discarded = -1
            data = data[end + 1 :]
        if self._partial:
            data = self._partial + data
            self._partial = b""
        if not data:
            return events

        pieces = data.replace(b"\r", b"\n").split(b"\n")
        tail = pieces.pop()
        max_line = self.max_line
        for piece in pieces:
            if not piece:
                continue
            if len(piece) > max_line:
                self._overflow(events, len(piece))
            else:
                events.append(Line(piece.decode("utf-8", "replace")))
                self.lines += 1
        if len(tail) > max_line:
            self._discarded = len(tail)
        else:
            self._partial = tail
        return events

    def _overflow(self, events: list[Line | Overflow], dropped: int) -> None:
        self.overflows += 1
        events.append(Overflow(dropped))
