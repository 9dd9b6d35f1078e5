"""AT transcripts: the sans-IO format, masking, rotation, and the engine writing one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.at.engine import AtEngine
from bridge.at.trace import (
    Entry,
    Transcript,
    escape,
    format_entry,
    mask_secrets,
    parse_entry,
    unescape,
)
from bridge.errors import TranscriptError
from tests.at.conftest import PtyModem
from tests.fixtures.modem import eventually


def read_entries(path: Path) -> list[Entry]:
    lines = path.read_text(encoding="ascii").splitlines(keepends=True)
    return [entry for entry in map(parse_entry, lines) if entry is not None]


@given(st.text())
def test_escape_round_trips_any_text_on_one_printable_line(text: str) -> None:
    escaped = escape(text)
    assert escaped.isascii()
    assert escaped.isprintable()
    assert unescape(escaped) == text


@given(
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.sampled_from([">", "<", "!"]),
    st.text(),
)
def test_entry_round_trips(stamp: float, direction: str, text: str) -> None:
    line = format_entry(Entry(stamp, direction, text))
    assert line.endswith("\n")
    assert line.count("\n") == 1
    parsed = parse_entry(line)
    assert parsed is not None
    assert parsed.direction == direction
    assert parsed.text == text
    assert parsed.time == pytest.approx(stamp, abs=1e-6)


def test_entry_format_is_the_documented_one() -> None:
    assert format_entry(Entry(12.5, "<", "+CSQ: 24,99")) == "12.500000 < +CSQ: 24,99\n"
    assert format_entry(Entry(1.0, ">", "AT\\x\r")) == "1.000000 > AT\\\\x\\r\n"
    assert parse_entry("# a comment\n") is None
    assert parse_entry("\n") is None
    with pytest.raises(ValueError, match="direction"):
        parse_entry("1.0 ? AT\n")
    with pytest.raises(ValueError, match="unknown escape"):
        parse_entry("1.0 < A\\qB\n")


def test_secrets_are_masked_and_other_lines_kept() -> None:
    assert mask_secrets("AT+CPIN=1234") == "AT+CPIN=***"
    assert mask_secrets('at+mipcall=1,"apn","user","s3cret"') == 'at+mipcall=1,"apn","user","***"'
    assert mask_secrets('AT+MIPPROFILE=1,"apn","u","p"') == 'AT+MIPPROFILE=1,"apn","u","***"'
    for kept in ('AT+MIPCALL=1,"internet"', "AT+CPIN?", 'AT+GTCOAPSEND=1,4,"40010001"'):
        assert mask_secrets(kept) == kept


def test_rotation_keeps_one_previous_file_and_every_entry_fits(tmp_path: Path) -> None:
    path = tmp_path / "at.trace"
    ticks = iter(range(100000))
    transcript = Transcript(str(path), port="/dev/x", max_bytes=1024, clock=lambda: next(ticks))
    transcript.open()
    for number in range(200):
        transcript.received(f"+CSQ: {number},99")
    transcript.close()
    previous = tmp_path / "at.trace.1"
    assert transcript.rotations >= 2
    assert path.stat().st_size <= 1024 + 64
    assert previous.stat().st_size <= 1024 + 64
    assert previous.read_text().startswith("# mqtt-coap-bridge AT transcript v1; port /dev/x")
    # The newest entries survive in order across the two files.
    texts = [entry.text for entry in read_entries(previous) + read_entries(path)]
    assert texts[-1] == "+CSQ: 199,99"
    numbers = [int(text.split(" ")[1].split(",")[0]) for text in texts]
    assert numbers == sorted(numbers)
    assert numbers == list(range(numbers[0], 200))


def test_unwritable_transcript_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    engine = AtEngine("/dev/null", trace_file=str(tmp_path / "missing" / "at.trace"))
    with pytest.raises(TranscriptError, match=r"missing/at\.trace.*check the path"):
        asyncio.run(engine.__aenter__())


async def test_engine_writes_both_directions_and_port_events(
    pty_modem: PtyModem, tmp_path: Path
) -> None:
    path = tmp_path / "at.trace"
    async with AtEngine(str(pty_modem.link), trace_file=str(path), command_timeout=2.0) as at:
        task = asyncio.create_task(at.command("AT+CSQ"))
        await pty_modem.expect("AT+CSQ", b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
        assert await task == ["+CSQ: 20,99"]
        pty_modem.send(b"\r\n+X: \x01\xff\r\n")
        await eventually(lambda: "+X" in path.read_text())
    entries = read_entries(path)
    assert [(e.direction, e.text) for e in entries] == [
        ("!", "port opened at 115200 baud"),
        (">", "AT+CSQ"),
        ("<", "AT+CSQ"),
        ("<", "+CSQ: 20,99"),
        ("<", "OK"),
        ("<", "+X: \x01\ufffd"),
    ]
    stamps = [entry.time for entry in entries]
    assert stamps == sorted(stamps)
    assert path.read_text().startswith("# mqtt-coap-bridge AT transcript v1; port ")
