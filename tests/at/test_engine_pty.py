"""The AT engine against a real pty, with the test playing the modem byte by byte."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.at.engine import AtEngine, owned_prefix
from bridge.errors import AtTimeout, ModemError, PortLost
from tests.at.conftest import PtyModem


@pytest.fixture
async def engine(pty_modem: PtyModem) -> AsyncIterator[AtEngine]:
    async with AtEngine(
        str(pty_modem.link), command_timeout=2.0, reconnect_initial=0.05, reconnect_max=0.2
    ) as at:
        yield at


def at_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("at-")]


async def test_owned_prefix() -> None:
    assert owned_prefix('AT+GTCOAPOPEN="1.2.3.4",5683') == "+GTCOAPOPEN:"
    assert owned_prefix("AT+CMEE?") == "+CMEE:"
    assert owned_prefix("at+csq") == "+CSQ:"
    assert owned_prefix("AT^SYSINFO") == "^SYSINFO:"
    assert owned_prefix("ATI") is None
    assert owned_prefix("ATE0") is None


async def test_command_returns_information_lines(engine: AtEngine, pty_modem: PtyModem) -> None:
    task = asyncio.create_task(engine.command("ATI"))
    await pty_modem.expect("ATI", b"\r\nFibocom\r\nL610\r\n\r\nOK\r\n")
    assert await task == ["Fibocom", "L610"]
    assert pty_modem.received == b"ATI\r"
    assert engine.stats.bytes_written == 4
    assert engine.connected


async def test_urc_between_information_line_and_ok(engine: AtEngine, pty_modem: PtyModem) -> None:
    urcs: list[str] = []
    engine.add_urc_handler("+GTCOAPDATA:", urcs.append)
    task = asyncio.create_task(engine.command("AT+CSQ"))
    await pty_modem.expect("AT+CSQ", b"\r\n+CSQ: 20,99\r\n\r\n+GTCOAPDATA: 1,2,ABCD\r\n\r\nOK\r\n")
    assert await task == ["+CSQ: 20,99"]
    assert urcs == ["+GTCOAPDATA: 1,2,ABCD"]
    assert engine.stats.urcs == 1


async def test_urc_split_across_reads(engine: AtEngine, pty_modem: PtyModem) -> None:
    urcs: list[str] = []
    got = asyncio.Event()
    engine.add_urc_handler("+GTCOAPDATA:", lambda line: (urcs.append(line), got.set()))
    for piece in (b"\r\n+GTCOAP", b"DATA: 3,", b"1,F", b"F\r", b"\n"):
        pty_modem.send(piece)
        await asyncio.sleep(0.02)  # separate reads on the engine side
    await asyncio.wait_for(got.wait(), 2)
    assert urcs == ["+GTCOAPDATA: 3,1,FF"]


async def test_running_command_owns_its_prefix(engine: AtEngine, pty_modem: PtyModem) -> None:
    urcs: list[str] = []
    engine.add_urc_handler("+CPIN:", urcs.append)
    task = asyncio.create_task(engine.command("AT+CPIN?"))
    await pty_modem.expect("AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n")
    assert await task == ["+CPIN: READY"]
    assert urcs == []
    # The same line with no command running (a boot line) is a URC.
    pty_modem.send(b"\r\n+CPIN: READY\r\n")
    task = asyncio.create_task(engine.command("AT"))
    await pty_modem.expect("AT")
    assert await task == []
    assert urcs == ["+CPIN: READY"]


async def test_close_confirmation_after_ok_goes_to_urc_handler(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    closed: list[str] = []
    engine.add_urc_handler("+GTCOAPCLOSE:", closed.append)
    first = asyncio.create_task(engine.command("AT+GTCOAPCLOSE=1"))
    second = asyncio.create_task(engine.command('AT+GTCOAPSEND=2,1,"FF"'))
    # The OK and the trailing confirmation arrive in one read.
    await pty_modem.expect("AT+GTCOAPCLOSE=1", b"\r\nOK\r\n\r\n+GTCOAPCLOSE: 1\r\n")
    assert await first == []
    await pty_modem.expect('AT+GTCOAPSEND=2,1,"FF"')
    assert await second == []
    assert closed == ["+GTCOAPCLOSE: 1"]


async def test_commands_run_one_at_a_time_in_order(engine: AtEngine, pty_modem: PtyModem) -> None:
    tasks = [asyncio.create_task(engine.command(f"AT+N={n}")) for n in range(5)]
    for n in range(5):
        assert await pty_modem.next_command() == f"AT+N={n}"
        await asyncio.sleep(0.02)
        assert pty_modem.pending_commands() == 0  # the next one waits for this final result
        pty_modem.send(f"\r\n+N: {n}\r\n\r\nOK\r\n".encode())
    assert await asyncio.gather(*tasks) == [[f"+N: {n}"] for n in range(5)]


async def test_queued_command_is_written_before_the_previous_caller_resumes(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    first = engine.submit("AT+N=1")
    second = engine.submit("AT+N=2")
    assert await pty_modem.next_command() == "AT+N=1"
    written_when_first_settled: list[int] = []
    first.add_done_callback(lambda _: written_when_first_settled.append(engine.stats.commands))
    pty_modem.send(b"\r\nOK\r\n")
    assert await pty_modem.next_command() == "AT+N=2"
    assert await first == []
    assert written_when_first_settled == [2]  # AT+N=2 went out in the same read callback
    pty_modem.send(b"\r\nERROR\r\n")
    with pytest.raises(ModemError):
        await second


async def test_lost_port_fails_queued_commands_too(engine: AtEngine, pty_modem: PtyModem) -> None:
    running = engine.submit("AT+CSQ")
    queued = [engine.submit(f"AT+N={n}") for n in range(3)]
    assert await pty_modem.next_command() == "AT+CSQ"
    pty_modem.unplug()
    for future in (running, *queued):
        with pytest.raises(PortLost):
            await future


async def test_cme_error_code_and_text(engine: AtEngine, pty_modem: PtyModem) -> None:
    task = asyncio.create_task(engine.command("AT+CPIN?"))
    await pty_modem.expect("AT+CPIN?", b"\r\n+CME ERROR: SIM not inserted\r\n")
    with pytest.raises(ModemError) as text_error:
        await task
    assert text_error.value.command == "AT+CPIN?"
    assert text_error.value.result == "+CME ERROR: SIM not inserted"
    assert text_error.value.text == "SIM not inserted"
    assert text_error.value.code == 10

    task = asyncio.create_task(engine.command("AT+CPIN?"))
    await pty_modem.expect("AT+CPIN?", b"\r\n+CME ERROR: 10\r\n")
    with pytest.raises(ModemError) as code_error:
        await task
    assert code_error.value.code == 10
    assert code_error.value.text == "SIM not inserted"

    task = asyncio.create_task(engine.command("AT+BOGUS"))
    await pty_modem.expect("AT+BOGUS", b"\r\nERROR\r\n")
    with pytest.raises(ModemError) as plain_error:
        await task
    assert plain_error.value.code is None
    assert plain_error.value.result == "ERROR"


async def test_timeout_then_late_reply_is_not_taken_by_next_command(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    unsolicited: list[str] = []
    engine.add_unsolicited_handler(unsolicited.append)
    with pytest.raises(AtTimeout) as timeout:
        await engine.command('AT+GTCOAPOPEN="10.0.0.1",5683', timeout=0.2)
    assert await pty_modem.next_command() == 'AT+GTCOAPOPEN="10.0.0.1",5683'
    message = str(timeout.value)
    assert "AT+GTCOAPOPEN" in message
    assert str(pty_modem.link) in message
    assert "0.2 s" in message
    assert engine.stats.timeouts == 1

    # The modem was only slow: its reply comes after the engine gave up, partly before
    # and partly after the resync probe is written.
    pty_modem.send(b"\r\n+GTCOAPOPEN: 1\r\n")
    task = asyncio.create_task(engine.command('AT+GTCOAPOPEN="10.0.0.2",5683'))
    await pty_modem.answer_resync(late=b"\r\nOK\r\n")
    await pty_modem.expect('AT+GTCOAPOPEN="10.0.0.2",5683', b"\r\n+GTCOAPOPEN: 2\r\n\r\nOK\r\n")
    assert await task == ["+GTCOAPOPEN: 2"]
    assert unsolicited == ["+GTCOAPOPEN: 1", "OK"]
    assert engine.stats.resyncs == 1

    # Resynced: the following command goes straight out.
    task = asyncio.create_task(engine.command("AT"))
    await pty_modem.expect("AT")
    assert await task == []


async def test_swallowed_final_result_then_resync(engine: AtEngine, pty_modem: PtyModem) -> None:
    task = asyncio.create_task(engine.command('AT+GTCOAPSEND=1,1,"00"', timeout=0.2))
    assert await pty_modem.next_command() == 'AT+GTCOAPSEND=1,1,"00"'
    with pytest.raises(AtTimeout):
        await task  # the modem never answers this one
    task = asyncio.create_task(engine.command("AT+CSQ"))
    await pty_modem.answer_resync()
    await pty_modem.expect("AT+CSQ", b"\r\n+CSQ: 12,99\r\n\r\nOK\r\n")
    assert await task == ["+CSQ: 12,99"]


async def test_unanswered_resync_fails_the_command_without_sending_it(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    with pytest.raises(AtTimeout):
        await engine.command("AT", timeout=0.1)
    with pytest.raises(AtTimeout, match="resync probe"):
        await engine.command("AT+CSQ", timeout=0.1)
    assert await pty_modem.next_command() == "AT"
    assert await pty_modem.next_command() == "AT+CMEE?"
    await asyncio.sleep(0.05)
    assert pty_modem.pending_commands() == 0  # AT+CSQ was never written
    # Once the modem answers again, the engine recovers.
    task = asyncio.create_task(engine.command("AT+CSQ"))
    await pty_modem.answer_resync()
    await pty_modem.expect("AT+CSQ", b"\r\n+CSQ: 12,99\r\n\r\nOK\r\n")
    assert await task == ["+CSQ: 12,99"]


async def test_cancelled_command_stays_on_the_wire_until_its_reply(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    task = asyncio.create_task(engine.command("AT+SLOW"))
    assert await pty_modem.next_command() == "AT+SLOW"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    second = asyncio.create_task(engine.command("AT+SLOW"))
    await asyncio.sleep(0.05)
    assert pty_modem.pending_commands() == 0  # held back until the first one's reply
    # The cancelled command's reply is read and dropped, then the next command goes.
    pty_modem.send(b"\r\n+SLOW: 1\r\n\r\nOK\r\n")
    await pty_modem.expect("AT+SLOW", b"\r\n+SLOW: 2\r\n\r\nOK\r\n")
    assert await second == ["+SLOW: 2"]
    assert engine.stats.resyncs == 0


async def test_garbage_and_overlong_line_between_commands(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    unsolicited: list[str] = []
    booted = asyncio.Event()
    engine.add_unsolicited_handler(unsolicited.append)
    engine.add_unsolicited_handler(lambda line: line == "RDY" and booted.set())
    pty_modem.send(b"\xff\xfe\x00noise\r\n")
    await pty_modem.send_bulk(b"\r\n" + b"A" * 10_000 + b"\r\nRDY\r\n")
    # Between commands: everything above has been read before the next command starts.
    await asyncio.wait_for(booted.wait(), 2)
    task = asyncio.create_task(engine.command("AT"))
    await pty_modem.expect("AT")
    assert await task == []
    assert unsolicited == ["\ufffd\ufffd\x00noise", "RDY"]
    assert engine.stats.overflows == 1
    assert engine.stats.unsolicited == 2


async def test_echo_is_dropped(engine: AtEngine, pty_modem: PtyModem) -> None:
    task = asyncio.create_task(engine.command("AT+CGMM"))
    await pty_modem.expect("AT+CGMM", b"AT+CGMM\r\r\nL610\r\n\r\nOK\r\n")
    assert await task == ["L610"]
    assert engine.stats.echoes == 1


async def test_failing_handler_does_not_stop_the_engine(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    def broken(line: str) -> None:
        raise RuntimeError(line)

    engine.add_urc_handler("+GTCOAPDATA:", broken)
    task = asyncio.create_task(engine.command("AT"))
    await pty_modem.expect("AT", b"\r\n+GTCOAPDATA: 1,1,00\r\n\r\nOK\r\n")
    assert await task == []
    assert engine.stats.handler_errors == 1


async def test_open_failure_raises_port_lost(tmp_path: Path) -> None:
    with pytest.raises(PortLost, match="cannot open"):
        async with AtEngine(str(tmp_path / "missing")):
            pass


async def test_close_stops_threads_promptly(pty_modem: PtyModem) -> None:
    async with AtEngine(str(pty_modem.link)) as at:
        # A port with a descriptor is watched by the event loop: no I/O threads at all.
        assert at_threads() == []
        pending = asyncio.create_task(at.command("AT"))
        await pty_modem.next_command()
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert at_threads() == []
    with pytest.raises(PortLost, match="closed"):
        await pending


async def test_port_vanishes_and_comes_back_at_the_same_path(
    engine: AtEngine, pty_modem: PtyModem
) -> None:
    states: list[bool] = []
    changed = asyncio.Event()
    engine.add_connection_handler(lambda up: (states.append(up), changed.set()))

    running = asyncio.create_task(engine.command("AT+CSQ"))
    assert await pty_modem.next_command() == "AT+CSQ"
    pty_modem.unplug()  # the master closes: the engine's next read fails with EIO
    await asyncio.wait_for(changed.wait(), 2)
    assert states == [False]
    assert not engine.connected
    with pytest.raises(PortLost, match="lost"):
        await running
    with pytest.raises(PortLost, match="not available"):
        await engine.command("AT")  # at once, not after a timeout

    await asyncio.sleep(0.3)  # a few failed reopen attempts while the path dangles
    changed.clear()
    pty_modem.plug()  # a new pty behind the same symlink, like a re-enumerated modem
    await asyncio.wait_for(changed.wait(), 2)
    await asyncio.wait_for(engine.wait_connected(), 1)
    assert states == [False, True]
    assert engine.stats.reconnects == 1

    task = asyncio.create_task(engine.command("AT+CSQ"))
    await pty_modem.answer_resync()
    await pty_modem.expect("AT+CSQ", b"\r\n+CSQ: 25,99\r\n\r\nOK\r\n")
    assert await task == ["+CSQ: 25,99"]
    assert at_threads() == []  # loop-driven I/O on a pty: no threads, none leaked


async def test_burst_of_1000_urcs_none_lost(engine: AtEngine, pty_modem: PtyModem) -> None:
    lines = [f"+GTCOAPDATA: 1,4,{n:08X}" for n in range(1000)]
    received: list[str] = []
    done = asyncio.Event()

    def on_data(line: str) -> None:
        received.append(line)
        if len(received) == len(lines):
            done.set()

    engine.add_urc_handler("+GTCOAPDATA:", on_data)
    await pty_modem.send_bulk("".join(f"\r\n{line}\r\n" for line in lines).encode())
    await asyncio.wait_for(done.wait(), 5)
    assert received == lines


async def test_urc_throughput_over_unthrottled_pty(
    engine: AtEngine, pty_modem: PtyModem, record_property: pytest.RecordProperty
) -> None:
    count = 50_000
    payload = "".join(f"\r\n+GTCOAPDATA: 1,16,{n:032X}\r\n" for n in range(count)).encode()
    received = 0
    done = asyncio.Event()

    def on_data(line: str) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    engine.add_urc_handler("+GTCOAPDATA:", on_data)
    started = time.perf_counter()
    await pty_modem.send_bulk(payload)
    await asyncio.wait_for(done.wait(), 20)
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    record_property("urc_lines_per_second", round(rate))
    print(
        f"\nAT engine URC burst: {count} lines ({len(payload)} bytes) in {elapsed:.3f} s "
        f"= {rate:,.0f} lines/s"
    )
    assert received == count


async def test_exception_in_body_propagates_unchanged(pty_modem: PtyModem) -> None:
    with pytest.raises(KeyError):
        async with AtEngine(str(pty_modem.link)):
            raise KeyError("body")
    assert at_threads() == []


async def test_command_with_line_break_is_refused(engine: AtEngine) -> None:
    with pytest.raises(ValueError, match="line break"):
        await engine.command("AT\rAT")


async def test_port_without_file_descriptor_uses_polling_reader() -> None:
    # loop:// (like rfc2217://) has no fileno: the reader polls with a short timeout.
    # It sends back what is written, i.e. an echo and never a final result.
    async with AtEngine("loop://", command_timeout=0.3) as at:
        with pytest.raises(AtTimeout, match="'AT'"):
            await at.command("AT")
        assert at.stats.echoes == 1
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert at_threads() == []
