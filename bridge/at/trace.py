"""AT transcripts: every line of a modem port, both directions, in a text file.

Format (see docs/transcripts.md): one entry per line, `<seconds> <direction> <text>`;
seconds on the monotonic clock with 6 decimals, direction `>` (host to modem), `<`
(modem to host) or `!` (an event of the port: opened, lost, an overlong line dropped);
the text escaped so that the entry stays on one line. Lines starting with `#` are
comments (the header written each time the file is opened). `format_entry` and
`parse_entry` are sans-IO; `Transcript` writes the file and rotates it at a size limit.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "Entry",
    "Transcript",
    "escape",
    "format_entry",
    "mask_secrets",
    "parse_entry",
    "unescape",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DIRECTIONS = (">", "<", "!")

_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_UNESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|(.))")
_SIMPLE = {"\\": "\\", "r": "\r", "n": "\n", "t": "\t"}
# Commands that carry a secret today or could tomorrow: the PIN, and the password of
# a PDP profile (`AT+MIPCALL=1,"<apn>","<user>","<password>"`, same for MIPPROFILE).
_PIN = re.compile(r"^(AT\+CPIN=).+$", re.IGNORECASE)
_PDP_PASSWORD = re.compile(
    r'^(AT\+(?:MIPCALL|MIPPROFILE)=1,"[^"]*","[^"]*",")[^"]*(")', re.IGNORECASE
)
MASK = "***"


@dataclass(frozen=True, slots=True)
class Entry:
    """One transcript line: when (monotonic seconds), which way, and the line."""

    time: float
    direction: str
    text: str


def escape(text: str) -> str:
    """Backslash, CR, LF and tab as `\\\\ \\r \\n \\t`; other non-printable or non-ASCII
    characters as `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`; printable ASCII as it is."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    out: list[str] = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _unescaped(match: re.Match[str]) -> str:
    *numbers, simple = match.groups()
    for number in numbers:
        if number is not None:
            return chr(int(number, 16))
    if simple not in _SIMPLE:
        raise ValueError(f"unknown escape \\{simple}")
    return _SIMPLE[simple]


def unescape(text: str) -> str:
    """The inverse of `escape`; raises ValueError on an unknown escape."""
    return _UNESCAPE.sub(_unescaped, text) if "\\" in text else text


def mask_secrets(text: str) -> str:
    """A host line with its secret parameters replaced by `***`."""
    if not text[:3].upper().startswith("AT+"):
        return text
    text = _PIN.sub(rf"\g<1>{MASK}", text)
    return _PDP_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", text)


def format_entry(entry: Entry) -> str:
    """The entry as one transcript line, with its newline."""
    return f"{entry.time:.6f} {entry.direction} {escape(entry.text)}\n"


def parse_entry(line: str) -> Entry | None:
    """One transcript line read back; None for a comment or an empty line.

    Raises ValueError for a line that is neither.
    """
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        return None
    stamp, direction, text = ([*line.split(" ", 2), "", ""])[:3]
    if direction not in DIRECTIONS:
        raise ValueError(f"transcript line has no direction > < or !: {line!r}")
    return Entry(float(stamp), direction, unescape(text))


class Transcript:
    """Appends entries to `path`; past `max_bytes` the file becomes `path.1` (the one
    before is dropped) and a new one starts. A write that fails (disk full, file gone)
    is logged once and the transcript stops: tracing must never stop the modem."""

    def __init__(
        self,
        path: str,
        *,
        port: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError(f"a transcript's size limit is at least 1024 bytes, not {max_bytes}")
        self.path = path
        self.port = port
        self.max_bytes = max_bytes
        self.rotations = 0
        self._clock = clock
        self._file: TextIO | None = None
        self._size = 0

    def open(self) -> None:
        """Open (append to) the file and write the header; raises OSError if it cannot."""
        self._file = open(self.path, "a", encoding="ascii", buffering=1)  # noqa: SIM115
        self._size = self._file.tell()
        self._header()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def sent(self, line: str) -> None:
        self._write(">", mask_secrets(line))

    def received(self, line: str) -> None:
        self._write("<", line)

    def event(self, text: str) -> None:
        self._write("!", text)

    def _header(self) -> None:
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._put(
            f"# mqtt-coap-bridge AT transcript v{FORMAT_VERSION}; port {self.port}; "
            f"opened {started} (monotonic {self._clock():.6f})\n"
        )

    def _write(self, direction: str, text: str) -> None:
        if self._file is None:
            return
        self._put(format_entry(Entry(self._clock(), direction, text)))
        if self._file is not None and self._size >= self.max_bytes:
            self._rotate()

    def _put(self, line: str) -> None:
        assert self._file is not None
        try:
            self._file.write(line)
        except (OSError, ValueError) as exc:
            log.warning("AT transcript %s stopped: %s", self.path, exc)
            self.close()
            return
        self._size += len(line)

    def _rotate(self) -> None:
        self.close()
        try:
            os.replace(self.path, f"{self.path}.1")
            self.open()
        except OSError as exc:
            log.warning("AT transcript %s stopped: cannot rotate it: %s", self.path, exc)
            self.close()
            return
        self.rotations += 1
