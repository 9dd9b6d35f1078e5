"""The daemon's AT transcript: `run --trace-at FILE` and `modem.trace_file` write every
line of a request's way through the modem, in the documented format."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.at.trace import Entry, parse_entry
from tests.fixtures.daemon import BridgeStackFactory

pytestmark = pytest.mark.timeout(90)


def entries(path: Path) -> list[Entry]:
    parsed = (parse_entry(line) for line in path.read_text(encoding="ascii").splitlines())
    return [entry for entry in parsed if entry is not None]


def test_run_trace_at_writes_the_transcript_of_a_request(
    bridge_stack: BridgeStackFactory, tmp_path: Path
) -> None:
    trace = tmp_path / "at.trace"
    stack = bridge_stack(start=False)
    stack.start_daemon(args=("--trace-at", str(trace)))
    answer = stack.mqtt.request({"id": "traced", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True
    stack.stop_daemon()

    written = entries(trace)
    sent = [entry.text for entry in written if entry.direction == ">"]
    received = [entry.text for entry in written if entry.direction == "<"]
    assert sent[:2] == ["AT", "ATE0"]
    assert any(text.startswith("AT+GTCOAPSEND=") for text in sent)
    assert any(text.startswith("+GTCOAPDATA: ") for text in received)
    assert written[0] == Entry(written[0].time, "!", "port opened at 115200 baud")
    stamps = [entry.time for entry in written]
    assert stamps == sorted(stamps)


def test_trace_file_from_the_config_rotates_at_its_size_limit(
    bridge_stack: BridgeStackFactory, tmp_path: Path
) -> None:
    trace = tmp_path / "modem.trace"
    stack = bridge_stack(overrides={"modem.trace_file": str(trace), "modem.trace_max_bytes": 1024})
    for number in range(3):
        answer = stack.mqtt.request({"id": f"rotate-{number}", "uri": "coap://lab/hello"})
        assert answer.body["ok"] is True
    stack.stop_daemon()
    previous = Path(f"{trace}.1")
    assert previous.exists()
    assert trace.stat().st_size <= 1024 + 600  # one entry past the limit at most
    assert entries(previous)
