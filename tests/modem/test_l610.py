"""The L610 driver over a real pty against the simulator, with a real UDP peer."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge.at.engine import AtEngine
from bridge.errors import (
    AtTimeout,
    DatagramTooLarge,
    ModemError,
    ModemUnavailable,
)
from bridge.modem.driver import Datagram
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.modem import COMMAND_TIMEOUT, eventually, make_l610
from tests.fixtures.simulator import SimulatorFactory

from .conftest import EchoServer, Recorder


async def _open_echo(modem: L610, udp_echo: EchoServer) -> int:
    return await modem.open("127.0.0.1", udp_echo.port)


async def _wait_reset_seen(modem: L610, generation: int) -> None:
    await eventually(lambda: modem.generation != generation)


# -- bring-up ------------------------------------------------------------------------------


async def test_bring_up_reads_identity_signal_and_address(modem: L610, sim: L610Simulator) -> None:
    health = modem.health()
    assert modem.ready
    assert health.model == "L610"
    assert health.firmware == "16000.1000.00.96.20.04"
    assert health.imei == "867584030123454"
    assert health.rssi_dbm == -113 + 2 * 24
    assert health.ip == "10.91.0.2"
    assert health.registered
    assert health.port == sim.port_path
    assert (health.generation, health.resets, health.malformed_urcs) == (0, 0, 0)
    # Bring-up took AT commands both ways over the line, none timed out.
    assert health.at_commands > 0
    assert health.at_timeouts == 0
    assert health.bytes_out > 0
    assert health.bytes_in > health.bytes_out
    published = health.as_dict()
    assert {"port", "model", "imei", "registered", "rssi_dbm", "ip", "resets"} <= set(published)


def _engine(sim: L610Simulator) -> AtEngine:
    return AtEngine(sim.port_path, command_timeout=COMMAND_TIMEOUT)


async def test_bring_up_without_sim_says_so(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(sim_inserted=False)
    async with _engine(sim) as at:
        with pytest.raises(ModemUnavailable, match="SIM not inserted") as caught:
            async with make_l610(at):
                pass
        assert sim.port_path in str(caught.value)


async def test_registration_delay_is_waited_out(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(register_after=1.0)
    async with _engine(sim) as at:
        started = time.monotonic()
        async with make_l610(at) as modem:
            assert modem.ready
            assert modem.health().registered
        assert time.monotonic() - started >= 1.0


async def test_no_registration_in_time_is_a_clear_error(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(register_after=30.0)
    async with _engine(sim) as at:
        with pytest.raises(ModemUnavailable, match=r"not registered .* after 0\.5 s") as caught:
            async with make_l610(at, registration_timeout=0.5):
                pass
        assert "searching" in str(caught.value)


async def test_bring_up_is_retried_until_it_succeeds_after_a_reboot(
    simulator_factory: SimulatorFactory,
) -> None:
    # Every power-on takes the network 1 s, longer than the registration timeout: after
    # the reboot the first bring-ups fail and the supervisor keeps retrying with backoff.
    sim = await simulator_factory(register_after=1.0)
    async with _engine(sim) as at:
        await asyncio.sleep(1.0)  # the first power-on's registration
        async with make_l610(at, registration_timeout=0.3, retry_max=0.2) as modem:
            await sim.reboot()
            await _wait_reset_seen(modem, 0)
            await eventually(lambda: "bring-up failed" in modem.health().state)
            assert "not registered" in modem.health().state
            with pytest.raises(ModemUnavailable, match="bring-up failed"):
                await modem.free_instance_ids()
            await modem.wait_ready(timeout=5)
            assert modem.generation == 1
            assert modem.health().resets == 1


# -- instances and datagrams ---------------------------------------------------------------


async def test_open_send_receive_round_trip(
    modem: L610, recorder: Recorder, udp_echo: EchoServer
) -> None:
    coap_id = await _open_echo(modem, udp_echo)
    payloads = [bytes([0x40, 0x01, 0x00, n]) + bytes(range(n)) for n in (1, 100, 255)]
    payloads.append(bytes(range(256)) * 2)  # exactly 512 bytes
    for payload in payloads:
        await modem.send(coap_id, payload)
    await recorder.wait_for(len(payloads))
    assert udp_echo.protocol.received == payloads
    assert recorder.datagrams == [Datagram(coap_id, payload) for payload in payloads]
    assert modem.health().datagrams_in == len(payloads)


async def test_close_waits_for_trailing_confirmation(
    modem: L610, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    free_before = await modem.free_instance_ids()
    coap_id = await _open_echo(modem, udp_echo)
    assert coap_id not in await modem.free_instance_ids()
    await modem.close(coap_id)
    assert await modem.free_instance_ids() == free_before
    with pytest.raises(ModemError):
        await modem.send(coap_id, b"\x40\x01\x00\x01")


async def test_all_instances_taken_gives_no_free_ids(modem: L610, udp_echo: EchoServer) -> None:
    ids = [await _open_echo(modem, udp_echo) for _ in range(4)]
    assert sorted(ids) == [1, 2, 3, 4]
    assert await modem.free_instance_ids() == []
    with pytest.raises(ModemError):
        await _open_echo(modem, udp_echo)
    await asyncio.gather(*(modem.close(coap_id) for coap_id in ids))
    assert await modem.free_instance_ids() == [1, 2, 3, 4]


async def test_oversized_datagram_is_refused_before_anything_is_written(
    modem: L610, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    coap_id = await _open_echo(modem, udp_echo)
    commands = sim.stats.commands
    with pytest.raises(DatagramTooLarge):
        await modem.send(coap_id, bytes(513))
    assert sim.stats.commands == commands


async def test_burst_of_1000_datagrams_loses_none(
    modem: L610, recorder: Recorder, sim: L610Simulator
) -> None:
    lines = [
        f"+GTCOAPDATA: {1 + n % 4},6,{(0x5000_0000_0000 + n).to_bytes(6, 'big').hex().upper()}"
        for n in range(1000)
    ]
    sim.inject_raw("".join(f"\r\n{line}\r\n" for line in lines).encode(), chunk_size=997)
    await recorder.wait_for(1000)
    expected = [Datagram(1 + n % 4, (0x5000_0000_0000 + n).to_bytes(6, "big")) for n in range(1000)]
    assert recorder.datagrams == expected
    assert modem.health().malformed_urcs == 0


async def test_malformed_data_lines_are_counted_logged_and_dropped(
    modem: L610, recorder: Recorder, sim: L610Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.modem")
    bad = [
        "+GTCOAPDATA: 1,2,ABC",  # odd-length hex
        "+GTCOAPDATA: 1,3,ABCD",  # data_len mismatch
        "+GTCOAPDATA: 1,2,WXYZ",  # not hex
        "+GTCOAPDATA: 1,513," + "00" * 513,  # over the modem's limit
    ]
    good = "+GTCOAPDATA: 2,2,CAFE"
    sim.inject_raw("".join(f"\r\n{line}\r\n" for line in [*bad, good]).encode())
    await recorder.wait_for(1)
    assert recorder.datagrams == [Datagram(2, b"\xca\xfe")]
    assert modem.health().malformed_urcs == len(bad)
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == len(bad)
    assert "odd-length" in warnings[0]
    assert "+GTCOAPDATA: 1,2,ABC" in warnings[0]
    assert "data_len 3 but 2 bytes" in warnings[1]
    assert modem.ready


async def test_datagram_for_unknown_id_is_delivered_with_its_id(
    modem: L610, recorder: Recorder, sim: L610Simulator
) -> None:
    sim.inject_raw(b"\r\n+GTCOAPDATA: 9,1,01\r\n")
    await recorder.wait_for(1)
    assert recorder.datagrams == [Datagram(9, b"\x01")]


async def test_a_failing_datagram_handler_does_not_stop_delivery(
    modem: L610, sim: L610Simulator
) -> None:
    seen: list[Datagram] = []

    def handler(datagram: Datagram) -> None:
        seen.append(datagram)
        if len(seen) == 1:
            raise RuntimeError("bug in the layer above")

    modem.set_datagram_handler(handler)
    sim.inject_raw(b"\r\n+GTCOAPDATA: 1,1,01\r\n+GTCOAPDATA: 1,1,02\r\n")
    await eventually(lambda: len(seen) == 2)
    assert modem.ready


# -- line noise and lost replies -----------------------------------------------------------


async def test_garbage_and_overlong_lines_between_commands(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    sim.inject_raw(b"\x00\xff\xfe garbage\r\n\r\r\n" + b"Z" * 10_000 + b"\r\nOK\r\n+WHAT: 1\r\n")
    await asyncio.sleep(0.1)
    coap_id = await _open_echo(modem, udp_echo)
    await modem.send(coap_id, b"\x40\x01\x00\x07")
    await recorder.wait_for(1)
    assert modem.ready
    assert (modem.generation, recorder.resets) == (0, 0)


async def test_urc_in_the_middle_of_a_reply(
    modem: L610, recorder: Recorder, sim: L610Simulator
) -> None:
    sim.urc_mid_reply("+GTCOAPDATA: 3,2,BEEF")
    assert await modem.free_instance_ids() == [1, 2, 3, 4]
    await recorder.wait_for(1)
    assert recorder.datagrams == [Datagram(3, b"\xbe\xef")]


async def test_swallowed_ok_times_out_then_the_driver_recovers(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    coap_id = await _open_echo(modem, udp_echo)
    sim.swallow_next_final()
    started = time.monotonic()
    with pytest.raises(AtTimeout, match="GTCOAPSEND"):
        await modem.send(coap_id, b"\x40\x01\x00\x01")
    assert time.monotonic() - started < COMMAND_TIMEOUT + 0.5
    await modem.send(coap_id, b"\x40\x01\x00\x02")
    await recorder.wait_for(2)
    assert [d.data for d in recorder.datagrams] == [b"\x40\x01\x00\x01", b"\x40\x01\x00\x02"]
    assert modem.ready
    assert modem.generation == 0


# -- resets --------------------------------------------------------------------------------


async def test_reboot_is_detected_and_bring_up_runs_again(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    old_id = await _open_echo(modem, udp_echo)
    await sim.reboot()
    await _wait_reset_seen(modem, 0)
    assert modem.generation == 1
    assert recorder.resets == 1
    await modem.wait_ready(timeout=5)
    assert recorder.resets == 1  # RDY and +CPIN: READY are one reset, not two
    assert modem.health().resets == 1
    assert modem.health().ip == "10.91.0.2"
    with pytest.raises(ModemError):
        await modem.send(old_id, b"\x40\x01\x00\x01")  # the instance died with the modem
    new_id = await _open_echo(modem, udp_echo)
    await modem.send(new_id, b"\x40\x01\x00\x03")
    await recorder.wait_for(1)
    assert recorder.datagrams == [Datagram(new_id, b"\x40\x01\x00\x03")]


async def test_reboot_in_the_middle_of_a_command(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    coap_id = await _open_echo(modem, udp_echo)
    sim.swallow_next_final()  # the reboot eats the reply: the command never completes
    send = asyncio.create_task(modem.send(coap_id, b"\x40\x01\x00\x01"))
    await asyncio.sleep(0.1)
    await sim.reboot()
    with pytest.raises(ModemUnavailable):
        await send
    await modem.wait_ready(timeout=5)
    assert (modem.generation, recorder.resets) == (1, 1)
    new_id = await _open_echo(modem, udp_echo)
    await modem.send(new_id, b"\x40\x01\x00\x04")
    await recorder.wait_for(1)


async def test_operations_fail_fast_while_not_ready(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    coap_id = await _open_echo(modem, udp_echo)
    await sim.unplug(1.0)
    await _wait_reset_seen(modem, 0)
    assert not modem.ready
    started = time.monotonic()
    for operation in (
        modem.send(coap_id, b"\x40\x01\x00\x01"),
        modem.open("127.0.0.1", udp_echo.port),
        modem.close(coap_id),
        modem.free_instance_ids(),
    ):
        with pytest.raises(ModemUnavailable, match=sim.port_path) as caught:
            await operation
        assert "not ready" in str(caught.value)
    assert time.monotonic() - started < 0.2
    with pytest.raises(ModemUnavailable, match="not ready after"):
        await modem.wait_ready(timeout=0.05)
    assert modem.health().state.startswith("port lost")


async def test_port_unplugged_and_replugged_on_the_same_path(
    modem: L610, recorder: Recorder, udp_echo: EchoServer, sim: L610Simulator
) -> None:
    path = sim.port_path
    await _open_echo(modem, udp_echo)
    await sim.unplug(0.5)
    await _wait_reset_seen(modem, 0)
    await modem.wait_ready(timeout=5)
    assert sim.port_path == path
    assert (modem.generation, recorder.resets) == (1, 1)
    coap_id = await _open_echo(modem, udp_echo)
    await modem.send(coap_id, b"\x40\x01\x00\x05")
    await recorder.wait_for(1)


async def test_echo_coming_back_means_the_modem_restarted(
    modem: L610, recorder: Recorder, at: AtEngine
) -> None:
    # A modem that restarts without its boot lines reaching us answers with echo on.
    await at.command("ATE1")
    await modem.free_instance_ids()
    assert (modem.generation, recorder.resets) == (1, 1)
    await modem.wait_ready(timeout=5)
    await modem.free_instance_ids()
    assert modem.ready
    assert modem.generation == 1


async def test_probe_notices_lost_settings(at: AtEngine) -> None:
    async with make_l610(at, probe_interval=0.2) as modem:
        resets: list[int] = []
        modem.add_reset_listener(lambda: resets.append(modem.generation))
        await at.command("AT+CMEE=0")  # what a silent restart does to bring-up's settings
        await _wait_reset_seen(modem, 0)
        await modem.wait_ready(timeout=5)
        assert resets == [1]
