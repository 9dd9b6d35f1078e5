"""The sans-IO line framer: exact cases, chunking invariance, bounded memory."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.at.framer import Line, LineFramer, Overflow


def reference(data: bytes, max_line: int) -> list[Line | Overflow]:
    """The framer's meaning, written the slow and obvious way."""
    *complete, _tail = re.split(rb"[\r\n]", data)
    return [
        Overflow(len(piece)) if len(piece) > max_line else Line(piece.decode("utf-8", "replace"))
        for piece in complete
        if piece
    ]


def feed_in_chunks(framer: LineFramer, data: bytes, cuts: list[int]) -> list[Line | Overflow]:
    events: list[Line | Overflow] = []
    start = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        events += framer.feed(data[start:cut])
        start = cut
    events += framer.feed(data[start:])
    return events


def test_crlf_lone_cr_lone_lf_and_empty_lines() -> None:
    framer = LineFramer()
    events = framer.feed(b"\r\nOK\r\n\r\nRDY\r+CPIN: READY\n\n\nlast")
    assert events == [Line("OK"), Line("RDY"), Line("+CPIN: READY")]
    assert framer.feed(b"\r\n") == [Line("last")]
    assert framer.lines == 4
    assert framer.overflows == 0


def test_line_split_over_many_feeds() -> None:
    framer = LineFramer()
    line = b"+GTCOAPDATA: 1,4,DEADBEEF"
    events: list[Line | Overflow] = []
    for byte in line:
        events += framer.feed(bytes([byte]))
    assert events == []
    assert framer.feed(b"\r") == [Line(line.decode())]
    assert framer.feed(b"\n") == []


def test_non_utf8_is_replaced_never_raises() -> None:
    framer = LineFramer()
    assert framer.feed(b"\xff\xfeOK\x00\xc3\r\n") == [Line("\ufffd\ufffdOK\x00\ufffd")]


def test_line_of_exactly_max_line_is_kept_one_more_is_dropped() -> None:
    framer = LineFramer(max_line=8)
    assert framer.feed(b"12345678\r\n123456789\r\nOK\r\n") == [
        Line("12345678"),
        Overflow(9),
        Line("OK"),
    ]
    assert framer.overflows == 1


def test_overlong_line_dropped_while_streaming_then_counted_once() -> None:
    framer = LineFramer(max_line=16)
    assert framer.feed(b"OK\r\n" + b"x" * 10) == [Line("OK")]
    assert framer.feed(b"y" * 10) == []  # crosses the limit: now discarding
    assert framer.buffered == 0
    assert framer.feed(b"z" * 100) == []
    assert framer.feed(b"zz\r\nERROR\r\n") == [Overflow(122), Line("ERROR")]
    assert framer.overflows == 1
    assert framer.lines == 2


def test_ten_mebibyte_line_without_terminator_keeps_memory_bounded() -> None:
    framer = LineFramer()
    chunk = b"A" * 65536
    tracemalloc.start()
    try:
        for _ in range(160):  # 10 MiB
            assert framer.feed(chunk) == []
            assert framer.buffered <= framer.max_line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Only ever a chunk-sized temporary, never the line itself.
    assert peak < 1024 * 1024
    assert framer.feed(b"\r\nOK\r\n") == [Overflow(160 * 65536), Line("OK")]


def test_invalid_max_line_rejected() -> None:
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(max_line=0)


# Pieces that make interesting streams far more often than uniform random bytes do.
PIECES = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b"OK", b"+GTCOAPDATA: 1,2,ABCD", b"\xff\xc3", b"x" * 7, b"y" * 20]
)
STREAMS = st.one_of(st.binary(max_size=600), st.lists(PIECES, max_size=60).map(b"".join))


@given(data=STREAMS, cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=30))
def test_any_chunking_gives_the_same_events_as_one_feed(data: bytes, cuts: list[int]) -> None:
    whole = LineFramer(max_line=16).feed(data)
    framer = LineFramer(max_line=16)
    assert feed_in_chunks(framer, data, cuts) == whole
    assert whole == reference(data, 16)
    assert framer.buffered <= 16
    assert framer.lines == sum(isinstance(event, Line) for event in whole)
    assert framer.overflows == sum(isinstance(event, Overflow) for event in whole)


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=50))
def test_arbitrary_bytes_never_raise_and_match_reference(data: bytes, cuts: list[int]) -> None:
    framer = LineFramer(max_line=64)
    assert feed_in_chunks(framer, data, cuts) == reference(data, 64)
    assert framer.buffered <= 64
