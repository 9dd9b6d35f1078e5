"""Command line splitting and the token bucket, sans-IO."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.simulator.lines import CommandSplitter, LineTooLong
from bridge.simulator.pacing import TokenBucket, baud_to_bytes_per_second


def test_lines_end_at_cr_and_lf_around_them_is_ignored() -> None:
    splitter = CommandSplitter()
    assert splitter.feed(b"AT\rATE0\r\nAT+CSQ\n\r\r\n") == [b"AT", b"ATE0", b"AT+CSQ"]
    # LF alone does not end a command line (V.25ter S3 is CR).
    assert splitter.feed(b"AT\n") == []
    assert splitter.feed(b"\r") == [b"AT"]


@given(
    st.lists(st.sampled_from([b"AT", b"ATE0", b'AT+GTCOAPSEND=1,1,"00"']), max_size=8), st.data()
)
def test_lines_split_over_any_feeds(commands: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(command + b"\r" for command in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    splitter = CommandSplitter()
    lines: list[bytes | LineTooLong] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        lines += splitter.feed(stream[previous:cut])
        previous = cut
    assert lines == commands


def test_overlong_line_is_dropped_without_buffering_it() -> None:
    splitter = CommandSplitter(max_line=10)
    assert splitter.feed(b"AT" + b"X" * 20) == []
    assert splitter.feed(b"Y" * 1000) == []
    assert len(splitter._buffer) == 0
    assert splitter.feed(b"Z\rAT\r") == [LineTooLong(1023), b"AT"]
    assert splitter.feed(b"A" * 11 + b"\r") == [LineTooLong(11)]
    assert splitter.feed(b"A" * 10 + b"\r") == [b"A" * 10]


def test_reset_forgets_a_partial_line() -> None:
    splitter = CommandSplitter()
    splitter.feed(b"AT+CS")
    splitter.reset()
    assert splitter.feed(b"AT\r") == [b"AT"]


def test_baud_is_ten_bit_times_per_byte() -> None:
    assert baud_to_bytes_per_second(9600) == 960.0


@pytest.mark.parametrize("rate", [960.0, 11520.0, 92160.0])
def test_token_bucket_keeps_the_long_run_rate_despite_late_wakeups(rate: float) -> None:
    jitter = random.Random(7)
    now = 0.0
    bucket = TokenBucket(rate, now)
    sent = 0
    while now < 2.0:
        granted = bucket.available(now)
        bucket.consume(granted)
        sent += granted
        # Sleep as asked, plus up to 2 ms of event-loop lateness.
        now += max(bucket.delay_for(1 << 16), 1e-4) + jitter.uniform(0, 0.002)
    assert sent == pytest.approx(rate * now, rel=0.03)


def test_token_bucket_has_no_large_initial_burst() -> None:
    bucket = TokenBucket(960.0, 0.0)
    assert bucket.available(0.0) <= 20
    assert bucket.available(100.0) <= 20


def test_token_bucket_rejects_zero_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0, 0.0)
