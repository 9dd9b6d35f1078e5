"""The simulator over a real pty, driven by a raw client, with real UDP peers."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable

import aiocoap
import pytest

from bridge.simulator import L610Simulator
from bridge.simulator.dialect import PDP_ADDRESS
from tests.fixtures.modem import eventually
from tests.fixtures.simulator import SimulatorFactory
from tests.simulator.conftest import UdpEcho
from tests.simulator.raw_port import RawPort


def link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return None


async def bring_up(port: RawPort) -> None:
    assert await port.command("ATE0") == ["ATE0", "OK"]
    assert await port.command("AT+MIPCALL=1") == ["OK"]
    await port.read_until(f"+MIPCALL: {PDP_ADDRESS}\r\n".encode())


async def open_instance(port: RawPort, host: str, udp_port: int) -> int:
    reply = await port.command(f'AT+GTCOAPOPEN="{host}",{udp_port}')
    assert reply[-1] == "OK", reply
    return int(reply[0].removeprefix("+GTCOAPOPEN: "))


async def test_echo_until_ate0(raw_port: RawPort) -> None:
    await raw_port.write(b"AT\r")
    assert await raw_port.read_final() == b"AT\r\r\nOK\r\n"
    await raw_port.write(b"at+cgmm\r")
    assert await raw_port.read_final() == b"at+cgmm\r\r\nL610\r\n\r\nOK\r\n"
    await raw_port.write(b"ATE0\r")
    assert await raw_port.read_final() == b"ATE0\r\r\nOK\r\n"
    await raw_port.write(b"AT\r\n")
    assert await raw_port.read_final() == b"\r\nOK\r\n"
    await raw_port.write(b"AT+NOPE\r")
    assert await raw_port.read_final() == b"\r\nERROR\r\n"


async def test_open_send_receive_close_against_udp_echo(
    simulator: L610Simulator, raw_port: RawPort, udp_echo: UdpEcho
) -> None:
    await bring_up(raw_port)
    coap_id = await open_instance(raw_port, "127.0.0.1", udp_echo.port)
    assert coap_id == 1
    assert await raw_port.command(f'AT+GTCOAPSEND={coap_id},4,"40011234"') == ["OK"]
    urc = await raw_port.read_until(b"\r\n", within=2.0)  # leading CR LF of the URC
    urc = await raw_port.read_until(b"\r\n")
    assert urc == b"+GTCOAPDATA: 1,4,40011234\r\n"
    assert udp_echo.received == [bytes.fromhex("40011234")]
    assert await raw_port.command(f"AT+GTCOAPCLOSE={coap_id}") == ["OK"]
    assert await raw_port.read_until(b"\r\n+GTCOAPCLOSE: 1\r\n") == b"\r\n+GTCOAPCLOSE: 1\r\n"
    stats = simulator.stats
    assert (stats.datagrams_out, stats.datagrams_in, stats.urcs) == (1, 1, 1)
    assert stats.max_datagram_out == 4
    assert stats.instances_open == 0


async def test_open_resolves_host_names(raw_port: RawPort, udp_echo: UdpEcho) -> None:
    await bring_up(raw_port)
    assert await open_instance(raw_port, "localhost", udp_echo.port) == 1
    assert await raw_port.command(f'AT+GTCOAPOPEN="no-such-host.invalid",{udp_echo.port}') == [
        "ERROR"
    ]
    assert await raw_port.command("AT+GTCOAPOPEN?") == [
        "+GTCOAPOPEN: 2",
        "+GTCOAPOPEN: 3",
        "+GTCOAPOPEN: 4",
        "OK",
    ]


async def test_commands_pipelined_behind_an_open_wait_their_turn(
    raw_port: RawPort, udp_echo: UdpEcho
) -> None:
    await bring_up(raw_port)
    await raw_port.write(f'AT+GTCOAPOPEN="localhost",{udp_echo.port}\rAT+CSQ\r'.encode())
    assert await raw_port.read_final() == b"\r\n+GTCOAPOPEN: 1\r\n\r\nOK\r\n"
    assert await raw_port.read_final() == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"


async def test_coap_exchange_with_a_real_aiocoap_server(
    raw_port: RawPort, unused_udp_port: int
) -> None:
    class Hello(aiocoap.resource.Resource):  # type: ignore[misc]
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=b"hello from coap")

    site = aiocoap.resource.Site()
    site.add_resource(["hello"], Hello())
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", unused_udp_port))
    try:
        await bring_up(raw_port)
        coap_id = await open_instance(raw_port, "127.0.0.1", unused_udp_port)
        request = aiocoap.Message(code=aiocoap.GET)
        # The host, not the modem, does message ids and tokens.
        request.mtype, request.mid, request.token = aiocoap.CON, 0x1234, b"\x42"
        request.opt.uri_path = ("hello",)
        datagram = request.encode()
        hex_data = datagram.hex().upper()
        assert await raw_port.command(f'AT+GTCOAPSEND={coap_id},{len(datagram)},"{hex_data}"') == [
            "OK"
        ]
        await raw_port.read_until(b"+GTCOAPDATA: ")
        fields = (await raw_port.read_until(b"\r\n"))[:-2].decode().split(",")
        assert fields[0] == str(coap_id)
        assert len(fields[2]) == 2 * int(fields[1])
        response = aiocoap.Message.decode(bytes.fromhex(fields[2]))
        assert response.code == aiocoap.CONTENT
        assert response.token == b"\x42"
        assert response.payload == b"hello from coap"
    finally:
        await server.shutdown()


@pytest.fixture
def unused_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sending_to_a_closed_port_keeps_the_instance_usable(
    raw_port: RawPort, unused_udp_port: int
) -> None:
    await bring_up(raw_port)
    coap_id = await open_instance(raw_port, "127.0.0.1", unused_udp_port)
    for _ in range(3):
        assert await raw_port.command(f'AT+GTCOAPSEND={coap_id},1,"00"') == ["OK"]
        await asyncio.sleep(0.02)


async def test_latency_is_added_each_way(
    simulator_factory: SimulatorFactory, udp_echo: UdpEcho
) -> None:
    sim = await simulator_factory(latency_ms=100)
    port = RawPort(sim.port_path)
    try:
        await bring_up(port)
        coap_id = await open_instance(port, "127.0.0.1", udp_echo.port)
        started = time.monotonic()
        assert await port.command(f'AT+GTCOAPSEND={coap_id},1,"AA"') == ["OK"]
        await port.read_until(b"+GTCOAPDATA: 1,1,AA\r\n", within=3.0)
        returned = time.monotonic()
        assert udp_echo.received == [b"\xaa"]
        # At least one latency out, and one more back from the echo's arrival. (Lower
        # bounds only: a loaded machine makes both later, never earlier.)
        (arrived,) = udp_echo.arrivals
        assert arrived - started >= 0.1
        assert returned - arrived >= 0.1
    finally:
        port.close()


async def run_lossy_exchange(factory: SimulatorFactory, echo: UdpEcho, seed: int) -> set[int]:
    sim = await factory(loss=0.3, seed=seed)
    port = RawPort(sim.port_path)
    try:
        await bring_up(port)
        coap_id = await open_instance(port, "127.0.0.1", echo.port)
        sends = [f'AT+GTCOAPSEND={coap_id},1,"{index:02X}"\r' for index in range(40)]
        await port.write("".join(sends).encode())
        await port.wait_count(b"\r\nOK\r\n", 40)
        # Every datagram went out and was either lost (either way) or came back as a
        # URC, which the port has read.
        await eventually(lambda: sim.stats.datagrams_lost + sim.stats.urcs == 40)
        await port.wait_count(b"+GTCOAPDATA: ", sim.stats.urcs)
        text = port.received.decode()
        assert text.count("OK") == 40
        returned = {int(hex_data, 16) for hex_data in re.findall(r"\+GTCOAPDATA: 1,1,(..)", text)}
        stats = sim.stats
        assert stats.datagrams_out == 40
        assert stats.datagrams_lost == 40 - len(returned)
        assert stats.urcs == len(returned)
        return returned
    finally:
        port.close()


async def test_loss_is_seeded(simulator_factory: SimulatorFactory, udp_echo: UdpEcho) -> None:
    first = await run_lossy_exchange(simulator_factory, udp_echo, seed=7)
    again = await run_lossy_exchange(simulator_factory, udp_echo, seed=7)
    other = await run_lossy_exchange(simulator_factory, udp_echo, seed=8)
    assert first == again
    assert first != other
    assert 10 <= len(first) <= 35  # (0.7 * 0.7) * 40 = 19.6 expected


async def test_reboot_drops_instances_and_prints_boot_lines(
    simulator: L610Simulator, raw_port: RawPort, udp_echo: UdpEcho
) -> None:
    await bring_up(raw_port)
    assert await raw_port.command("AT+CMEE=2") == ["OK"]
    coap_id = await open_instance(raw_port, "127.0.0.1", udp_echo.port)
    await simulator.reboot()
    assert await raw_port.read_until(b"+CPIN: READY\r\n") == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n"
    assert simulator.stats.instances_open == 0
    assert await raw_port.command("AT+CMEE?") == ["AT+CMEE?", "+CMEE: 0", "OK"]
    assert await raw_port.command("AT+MIPCALL?") == ["AT+MIPCALL?", "+MIPCALL: 0", "OK"]
    send = f'AT+GTCOAPSEND={coap_id},1,"00"'
    assert await raw_port.command(send) == [send, "ERROR"]
    assert simulator.stats.reboots == 1


async def test_unplug_and_replug_keep_the_path(
    simulator: L610Simulator, raw_port: RawPort, udp_echo: UdpEcho
) -> None:
    path = simulator.port_path
    await bring_up(raw_port)
    await open_instance(raw_port, "127.0.0.1", udp_echo.port)
    await simulator.unplug(0.3)
    await raw_port.wait_lost()
    assert not simulator.plugged
    assert link_target(path) is None
    with pytest.raises(FileNotFoundError):
        os.open(path, os.O_RDWR | os.O_NOCTTY)
    async with asyncio.timeout(2):
        await simulator.wait_plugged()
    assert link_target(path) == simulator.device_path
    port = RawPort(path)
    try:
        # The USB device re-enumerated after a reset: boot lines, echo on, no instances.
        await port.read_until(b"\r\nRDY\r\n\r\n+CPIN: READY\r\n")
        assert await port.command("AT") == ["AT", "OK"]
        assert simulator.stats.instances_open == 0
        assert simulator.stats.unplugs == 1
    finally:
        port.close()


async def test_the_host_can_close_and_reopen_the_port(simulator: L610Simulator) -> None:
    for _ in range(3):
        port = RawPort(simulator.port_path)
        assert await port.command("AT") == ["AT", "OK"]
        port.close()


async def test_inject_raw_in_chunks_splits_reads(
    simulator: L610Simulator, raw_port: RawPort
) -> None:
    burst = b"\r\n+GTCOAPDATA: 1,2,ABCD\r\n\xff\x00garbage\r\n"
    started = time.monotonic()
    simulator.inject_raw(burst, chunk_size=4, chunk_delay=0.01)
    assert await raw_port.read_until(b"garbage\r\n") == burst
    assert time.monotonic() - started >= 0.08
    assert len(raw_port.reads) >= 5
    simulator.inject_raw(b"RDY\r\n")
    assert await raw_port.read_until(b"RDY\r\n") == b"RDY\r\n"


async def test_swallowed_final_and_urc_mid_reply_over_the_pty(
    simulator: L610Simulator, raw_port: RawPort
) -> None:
    assert await raw_port.command("ATE0") == ["ATE0", "OK"]
    simulator.swallow_next_final()
    await raw_port.write(b"AT+CSQ\r")
    assert await raw_port.read_until(b"+CSQ: 24,99\r\n") == b"\r\n+CSQ: 24,99\r\n"
    # No OK follows, now or later: the next command's reply would start with it.
    simulator.urc_mid_reply("+GTCOAPDATA: 1,1,00")
    assert await raw_port.command("AT+CGMM") == ["L610", "+GTCOAPDATA: 1,1,00", "OK"]


async def test_output_is_paced_to_the_baud_rate(
    simulator_factory: SimulatorFactory, record_property: Callable[[str, object], None]
) -> None:
    sim = await simulator_factory(baud=9600)
    port = RawPort(sim.port_path)
    try:
        payload = b"x" * 958 + b"\r\n"
        sim.inject_raw(payload)
        await port.read_until(b"x")
        started = time.monotonic()
        await port.read_until(b"\r\n", within=3.0)
        elapsed = time.monotonic() - started
        record_property("output_bytes_per_second", round((len(payload) - 1) / elapsed))
        # 960 bytes/s at most (a lower bound on the time: a slow machine only adds to it),
        # and in many pieces, not one burst.
        assert elapsed >= (len(payload) - 1) / 1150
        assert len(port.reads) >= 10
    finally:
        port.close()


async def test_input_is_paced_to_the_baud_rate(simulator_factory: SimulatorFactory) -> None:
    sim = await simulator_factory(baud=9600)
    port = RawPort(sim.port_path)
    try:
        assert await port.command("ATE0", within=3.0) == ["ATE0", "OK"]
        line = b"AT+" + b"X" * 954 + b"\r"
        started = time.monotonic()
        await port.write(line)
        assert await port.read_final(within=3.0) == b"\r\nERROR\r\n"
        elapsed = time.monotonic() - started
        # 958 bytes in at 960 bytes/s, then 9 bytes out: a second at least.
        assert elapsed >= 0.8
    finally:
        port.close()


async def test_unthrottled_pipelined_exchanges_all_come_back(
    simulator: L610Simulator,
    raw_port: RawPort,
    udp_echo: UdpEcho,
    record_property: Callable[[str, object], None],
) -> None:
    await bring_up(raw_port)
    coap_id = await open_instance(raw_port, "127.0.0.1", udp_echo.port)
    windows, window = 60, 50
    datagram = "40010001" + "FF" + "AB" * 60
    command = f'AT+GTCOAPSEND={coap_id},{len(datagram) // 2},"{datagram}"\r'.encode()
    urc = f"\r\n+GTCOAPDATA: 1,{len(datagram) // 2},{datagram}\r\n".encode()
    started = time.monotonic()
    # A pipelining host: a window of sends in flight, then wait for their answers (a
    # burst of thousands would overflow the echo server's socket buffer instead).
    for _ in range(windows):
        await raw_port.write(command * window)
        await raw_port.wait_count(urc, window)
        await raw_port.wait_count(b"\r\nOK\r\n", window)
        window_output = bytes(raw_port.received)
        raw_port.received.clear()
        assert window_output.count(urc) == window
        assert len(window_output) == window * (len(urc) + len(b"\r\nOK\r\n"))
    # Recorded, not asserted: a figure for the reader (thousands a second here).
    record_property("exchanges_per_second", round(window * windows / (time.monotonic() - started)))
    assert simulator.stats.urcs == window * windows


async def test_stats_count_bytes_on_the_pty(simulator: L610Simulator, raw_port: RawPort) -> None:
    for command in ("AT", "ATI", "AT+CSQ", "AT+BAD"):
        await raw_port.command(command)
    stats = simulator.stats
    assert stats.bytes_in == len(b"AT\rATI\rAT+CSQ\rAT+BAD\r")
    assert stats.bytes_out == raw_port.total_read
    assert stats.commands == 4


async def test_no_sim_and_late_registration(simulator_factory: SimulatorFactory) -> None:
    no_sim = await simulator_factory(sim_inserted=False)
    port = RawPort(no_sim.port_path)
    try:
        assert await port.command("AT+CMEE=2") == ["AT+CMEE=2", "OK"]
        assert await port.command("AT+CPIN?") == ["AT+CPIN?", "+CME ERROR: SIM not inserted"]
    finally:
        port.close()
    late = await simulator_factory(register_after=0.3)
    port = RawPort(late.port_path)
    try:
        assert await port.command("AT+CEREG?") == ["AT+CEREG?", "+CEREG: 0,2", "OK"]
        started = time.monotonic()
        while (reply := await port.command("AT+CEREG?")) != ["AT+CEREG?", "+CEREG: 0,1", "OK"]:
            assert reply == ["AT+CEREG?", "+CEREG: 0,2", "OK"], reply
            assert time.monotonic() - started < 3, "not registered within 3 s"
            await asyncio.sleep(0.02)
    finally:
        port.close()


async def test_unplugging_twice_replugs_once(simulator: L610Simulator) -> None:
    await simulator.unplug(5.0)
    await simulator.unplug(0.1)
    async with asyncio.timeout(2):
        await simulator.wait_plugged()
    device = simulator.device_path
    await asyncio.sleep(0.15)
    assert simulator.device_path == device
    port = RawPort(simulator.port_path)
    try:
        await port.read_until(b"+CPIN: READY\r\n")
        assert await port.command("AT") == ["AT", "OK"]
        assert port.received == b""  # booted once
    finally:
        port.close()
