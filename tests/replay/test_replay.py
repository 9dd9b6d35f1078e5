"""Transcripts recorded from the simulator (tests/transcripts), replayed as the modem
against the real engine, driver and CoAP stack: a bring-up, a block-wise GET and a
modem reset in the middle of a request. Host lines are checked against the recording,
modem lines are sent with their recorded spacing."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from bridge.at.engine import AtEngine
from bridge.at.trace import Entry
from bridge.simulator.firmware import FIRMWARES
from tests.fixtures.coap_servers import LARGE_PAYLOAD
from tests.fixtures.replay import Bindings, TranscriptModem, coap_target, load_transcript
from tests.fixtures.simulator import SimulatorFactory
from tests.transcripts import scenarios
from tests.transcripts.record import BLOCKWISE, BRING_UP, RESET


def uri(entries: list[Entry], path: str) -> str:
    host, port = coap_target(entries)
    return f"coap://{host}:{port}{path}"


async def test_bring_up_replayed(tmp_path: Path) -> None:
    entries = load_transcript(BRING_UP)
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        health, free = await scenarios.bring_up(str(modem.link))
        await modem.finished()
    assert (health.model, health.imei, health.ip) == ("L610", "867584030123454", "10.91.0.2")
    assert free == [1, 2, 3, 4]


async def test_blockwise_get_replayed(tmp_path: Path) -> None:
    entries = load_transcript(BLOCKWISE)
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        response, generation = await scenarios.get(str(modem.link), uri(entries, "/large"))
        await modem.finished()
    assert response.payload == LARGE_PAYLOAD
    assert generation == 0
    # Each block was a request of its own with an id of the host's choosing.
    assert len(modem.bindings.message_ids) >= len(LARGE_PAYLOAD) // 256


async def test_reset_mid_request_replayed(tmp_path: Path) -> None:
    entries = load_transcript(RESET)
    assert [e.text for e in entries].count("RDY") == 1
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        response, generation = await scenarios.get(str(modem.link), uri(entries, "/slow?1"))
        await modem.finished()
    assert response.payload == b"slept 1 s"
    assert generation == 1  # the boot lines were taken for a reset; the GET was resent


async def test_a_host_line_off_the_recording_is_reported(tmp_path: Path) -> None:
    entries = load_transcript(BRING_UP)
    index = next(i for i, e in enumerate(entries) if e.text == "AT+CMEE=2")
    entries[index] = Entry(entries[index].time, ">", "AT+CMEE=1")
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        bring_up = asyncio.create_task(scenarios.bring_up(str(modem.link)))
        with pytest.raises(AssertionError, match=f"entry {index}: host wrote 'AT\\+CMEE=2'"):
            await modem.finished()
        bring_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bring_up


async def test_modem_lines_keep_their_recorded_spacing(tmp_path: Path) -> None:
    entries = [Entry(10.0, ">", "AT"), Entry(10.0, "<", "AT"), Entry(10.4, "<", "OK")]
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        async with AtEngine(str(modem.link)) as at:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await at.command("AT") == []
            assert loop.time() - started >= 0.4
        await modem.finished()


def test_message_ids_and_tokens_are_bound_and_substituted() -> None:
    bindings = Bindings()
    recorded = 'AT+GTCOAPSEND=1,8,"42011111AAAA0000"'
    assert bindings.matches(recorded, 'AT+GTCOAPSEND=1,8,"42012222BBBB0000"')
    assert bindings.rewrite("+GTCOAPDATA: 1,6,62451111AAAA") == "+GTCOAPDATA: 1,6,62452222BBBB"
    # Bound once, the same ever after; the rest of the datagram must be equal.
    assert not bindings.matches(recorded, 'AT+GTCOAPSEND=1,8,"42013333BBBB0000"')
    assert not bindings.matches(
        'AT+GTCOAPSEND=1,8,"42014444CCCC0000"', 'AT+GTCOAPSEND=1,8,"42015555DDDD0001"'
    )
    assert not bindings.matches(recorded, 'AT+GTCOAPSEND=2,8,"42012222BBBB0000"')
    assert bindings.rewrite("+CSQ: 24,99") == "+CSQ: 24,99"


async def test_a_fresh_recording_from_the_simulator_replays(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    trace = tmp_path / "fresh.trace"
    sim = await simulator_factory(firmware=FIRMWARES["sim-ready"])
    recorded = await scenarios.bring_up(sim.port_path, str(trace))
    entries = load_transcript(trace)
    async with TranscriptModem(entries, tmp_path / "ttyL610") as modem:
        replayed = await scenarios.bring_up(str(modem.link))
        await modem.finished()
    # What the driver read and did is the same; the port and the line's framing bytes
    # are the replay's own.
    (health, free), (recorded_health, recorded_free) = replayed, recorded
    assert free == recorded_free
    assert health.as_dict() | SAME_LINE == recorded_health.as_dict() | SAME_LINE


SAME_LINE = {"port": "", "bytes_in": 0}
