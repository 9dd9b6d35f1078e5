"""What a confused modem can put on the serial line, through the real engine over a pty.

tests/at covers the framer sans-IO (including a 10 MiB line) and 10 kB of noise through
the engine; tests/modem covers malformed and unknown-id +GTCOAPDATA lines through the
driver. Here the same faults go through the whole serial path at full size: the
simulator's pty, pyserial, the engine's reader and the L610 driver's supervisor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.at.engine import AtEngine
from bridge.at.framer import DEFAULT_MAX_LINE
from bridge.modem.driver import Datagram
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.modem import COMMAND_TIMEOUT, make_l610
from tests.fixtures.simulator import SimulatorFactory

TEN_MIB = 10 * 1024 * 1024


@dataclass
class Line:
    sim: L610Simulator
    at: AtEngine
    modem: L610
    datagrams: list[Datagram]


@pytest.fixture
async def line(simulator_factory: SimulatorFactory) -> AsyncIterator[Line]:
    sim = await simulator_factory()
    async with (
        AtEngine(sim.port_path, command_timeout=COMMAND_TIMEOUT, reconnect_initial=0.05) as at,
        make_l610(at) as modem,
    ):
        datagrams: list[Datagram] = []
        modem.set_datagram_handler(datagrams.append)
        yield Line(sim, at, modem, datagrams)


async def drained(at: AtEngine, expected_bytes: int, within: float = 20.0) -> None:
    """Wait until the engine has read `expected_bytes` in total from the port."""
    async with asyncio.timeout(within):
        # The engine's counters have no change notification: poll them.
        while at.stats.bytes_read < expected_bytes:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_ten_mebibyte_line_without_terminator_is_dropped_and_the_modem_serves_on(
    line: Line,
) -> None:
    before = line.at.stats.bytes_read
    generation = line.modem.generation
    # 10 MiB with neither CR nor LF, in 64 KiB chunks a little apart. The simulator, like
    # a USB device, discards output beyond 1 MiB that the host has not read yet, so the
    # next MiB goes out once the engine has read the last (flow control: on a loaded
    # machine the reader may lag, and dropped bytes would never be read).
    data = b"\x55" * TEN_MIB + b"\r\n+GTCOAPDATA: 2,2,CAFE\r\n"
    step = 1024 * 1024
    for offset in range(0, len(data), step):
        part = data[offset : offset + step]
        line.sim.inject_raw(part, chunk_size=65536, chunk_delay=0.002)
        await drained(line.at, before + offset + len(part))
        assert line.sim.stats.bytes_dropped == 0

    # Still the same modem: no reset was inferred from the noise, and commands work.
    assert await line.at.command("AT") == []
    assert await line.modem.free_instance_ids() == [1, 2, 3, 4]
    assert line.at.stats.overflows == 1
    assert line.datagrams == [Datagram(2, b"\xca\xfe")]
    assert (line.modem.generation, line.modem.ready) == (generation, True)


async def test_overlong_data_urc_is_dropped_not_truncated_into_a_datagram(line: Line) -> None:
    before = line.at.stats.bytes_read
    # A +GTCOAPDATA longer than the line limit must not turn into a shortened datagram.
    hex_body = "AB" * DEFAULT_MAX_LINE
    urc = f"\r\n+GTCOAPDATA: 1,{DEFAULT_MAX_LINE},{hex_body}\r\n+GTCOAPDATA: 1,1,01\r\n"
    line.sim.inject_raw(urc.encode(), chunk_size=1000)
    await drained(line.at, before + len(urc))
    assert await line.at.command("AT") == []
    assert line.datagrams == [Datagram(1, b"\x01")]
    assert line.at.stats.overflows == 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    noise=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from(
                [
                    b"OK",
                    b"ERROR",
                    b"+CME ERROR: 3",
                    b"RDY",
                    b"+CPIN: READY",
                    b"+GTCOAPDATA: 1,2,ABC",
                    b"+GTCOAPDATA: 9,1,01",
                    b"+GTCOAPDATA: 1,3,ABCD",
                    b"+GTCOAPCLOSE: 2",
                    b"AT+CMEE?",
                    b"+CMEE: 2",
                    b"\r",
                    b"\n",
                    b"\x00\xff",
                ]
            ),
        ),
        max_size=12,
    ),
    chunk_size=st.integers(min_value=1, max_value=64),
)
async def test_arbitrary_bytes_on_the_line_never_break_the_engine(
    line: Line, noise: list[bytes], chunk_size: int
) -> None:
    # Ends with a line break: a partial last line would otherwise (rightly) become the
    # first information line of the next command's reply.
    data = b"".join(noise) + b"\r\n"
    before = line.at.stats.bytes_read
    line.sim.inject_raw(data, chunk_size=chunk_size)
    await drained(line.at, before + len(data))
    # Boot lines in the noise make the driver re-run bring-up (that is its job); once it
    # is ready again the engine must answer the next command normally.
    await line.modem.wait_ready(timeout=10)
    assert await line.at.command("AT") == []
    await line.modem.wait_ready(timeout=10)


# Noise that is no reply line the engine or the driver knows: no final result, boot
# line, echo or +GTCOAP/+MIP/+C... information line (any of those would rightly be taken
# for part of a reply). Line breaks included, so that noise lines end up between the
# reply's lines.
def _foreign(data: bytes) -> bool:
    known = (b"OK", b"ERROR", b"RDY", b"AT", b"+C", b"+G", b"+M", b"NO CARRIER")
    return not any(token in data.upper() for token in known)


foreign_noise = st.lists(
    st.one_of(
        st.binary(max_size=200).filter(_foreign),
        st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00\xff", b"+EUSIM: 1", b"NOISE", b"\x1b[2J"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(noise=foreign_noise, chunk_size=st.integers(min_value=1, max_value=32))
async def test_noise_while_commands_are_pending_leaves_their_replies_intact(
    line: Line, noise: list[bytes], chunk_size: int
) -> None:
    # The noise arrives in small writes while the driver asks for the free instances
    # over and over: noise lands before, between and after the lines of the replies.
    data = b"".join(noise) + b"\r\n"
    # The bytes of one clean reply, to tell when all the noise has been read as well.
    start = line.at.stats.bytes_read
    answers = [await line.modem.free_instance_ids()]
    reply_bytes = line.at.stats.bytes_read - start
    before = line.at.stats.bytes_read
    line.sim.inject_raw(data, chunk_size=chunk_size, chunk_delay=0.0005)
    while line.at.stats.bytes_read - before < len(data) + (len(answers) - 1) * reply_bytes:
        answers.append(await line.modem.free_instance_ids())
    # Every reply parsed to what the modem said, however the noise fell.
    assert answers == [[1, 2, 3, 4]] * len(answers)
    assert line.modem.ready
    assert await line.at.command("AT") == []
