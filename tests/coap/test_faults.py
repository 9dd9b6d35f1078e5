"""Losses, silence, resets, refusals and the 512-byte limit, end to end over the simulator."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiocoap import GET, POST, PUT, Message

from bridge.coap import CoapTransportSettings
from bridge.errors import CoapReset, CoapTimeout, DatagramTooLarge, ModemError, ModemUnavailable
from tests.coap.conftest import FAST, Stack, StackFactory
from tests.fixtures.coap_servers import LARGE_PAYLOAD, AiocoapServer, SilentPort
from tests.fixtures.modem import eventually

BODY_2000 = bytes((i * 31 + 7) % 256 for i in range(2000))


async def test_every_request_answered_despite_twenty_percent_loss(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    settings = CoapTransportSettings(ack_timeout=0.1, max_retransmit=8)
    stack = await make_stack(settings, loss=0.2, seed=7)

    responses = await asyncio.gather(
        *(
            stack.coap.request(
                Message(code=POST, uri=aiocoap_server.uri("/echo"), payload=f"n{n}".encode()),
                timeout=30,
            )
            for n in range(40)
        )
    )
    large = await stack.coap.request(
        Message(code=GET, uri=aiocoap_server.uri("/large")), timeout=30
    )

    assert [r.payload for r in responses] == [f"n{n}".encode() for n in range(40)]
    assert large.payload == LARGE_PAYLOAD
    assert stack.sim.stats.datagrams_lost > 0


async def test_silent_port_gives_coap_timeout(stack: Stack, silent_udp_port: SilentPort) -> None:
    with pytest.raises(CoapTimeout) as raised:
        await stack.coap.request(Message(code=GET, uri=silent_udp_port.uri("/x")), timeout=1.0)

    assert str(raised.value) == f"no response from 127.0.0.1:{silent_udp_port.port} within 1 s"
    # CON retransmissions went out (ACK_TIMEOUT 0.25 s in these tests).
    assert len(silent_udp_port.received) >= 2
    assert stack.coap.stats().in_flight == 0


async def test_retransmissions_exhausted_gives_coap_timeout(
    make_stack: StackFactory, silent_udp_port: SilentPort
) -> None:
    stack = await make_stack(CoapTransportSettings(ack_timeout=0.05, max_retransmit=2))

    with pytest.raises(CoapTimeout, match=f"no response from 127.0.0.1:{silent_udp_port.port}"):
        await stack.coap.request(Message(code=GET, uri=silent_udp_port.uri("/x")), timeout=10)

    assert len(silent_udp_port.received) == 3


class _Resetter(asyncio.DatagramProtocol):
    """Answers every CON with an RST of the same message id (a peer refusing it)."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 4 and (data[0] >> 4) & 0x3 == 0:
            (mid,) = struct.unpack("!H", data[2:4])
            self.transport.sendto(struct.pack("!BBH", 0x70, 0, mid), addr)


@pytest.fixture
async def resetting_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Resetter, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_rst_gives_coap_reset(stack: Stack, resetting_port: int) -> None:
    with pytest.raises(CoapReset, match=f"127.0.0.1:{resetting_port} answered with a reset"):
        await stack.coap.request(
            Message(code=GET, uri=f"coap://127.0.0.1:{resetting_port}/x"), timeout=5
        )


async def test_modem_reboot_during_block2_transfer_completes_or_fails_clearly(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    stack = await make_stack(latency_ms=15.0)
    transfer = asyncio.create_task(
        stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/large")), timeout=15)
    )
    await eventually(lambda: stack.sim.stats.datagrams_in >= 4)

    await stack.sim.reboot()

    # The reopened instance has a new source port, so the aiocoap server answers the
    # next block with 4.08; the (idempotent) transfer then starts over and completes.
    async with asyncio.timeout(20):
        response = await transfer
    assert response.payload == LARGE_PAYLOAD
    assert stack.coap.stats().instances_lost_in_resets == 1
    # And the stack is usable again afterwards.
    again = await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=5)
    assert again.code.is_successful()


async def test_modem_reboot_during_block1_transfer_completes_or_fails_clearly(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    stack = await make_stack(latency_ms=15.0)
    transfer = asyncio.create_task(
        stack.coap.request(
            Message(code=PUT, uri=aiocoap_server.uri("/store"), payload=BODY_2000), timeout=15
        )
    )
    await eventually(lambda: stack.sim.stats.datagrams_in >= 3)

    await stack.sim.reboot()

    async with asyncio.timeout(20):
        response = await transfer
    assert response.code.is_successful()
    assert aiocoap_server.store.content == BODY_2000


async def test_request_while_modem_is_down_fails_clearly_without_hanging(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    stack = await make_stack()
    await stack.sim.unplug(5.0)
    await eventually(lambda: not stack.modem.ready)

    with pytest.raises(ModemUnavailable, match=r"could not send to 127\.0\.0\.1") as raised:
        await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=1.0)

    assert "not ready" in str(raised.value)


async def test_request_made_while_modem_is_down_goes_out_as_soon_as_it_is_back(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    # Retransmission alone could not make it: the first one is 5 s away, the timeout 4 s.
    stack = await make_stack(CoapTransportSettings(ack_timeout=5.0, max_retransmit=1))
    await stack.sim.unplug(1.0)
    await eventually(lambda: not stack.modem.ready)
    started = asyncio.get_running_loop().time()

    response = await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=4)

    assert response.code.is_successful()
    assert asyncio.get_running_loop().time() - started < 4


async def test_oversized_request_refused_before_anything_is_sent(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    commands_before = stack.sim.stats.commands
    message = Message(code=GET, uri=aiocoap_server.uri("/" + "p" * 250 + "/" + "q" * 250))

    with pytest.raises(DatagramTooLarge, match="at most 512 bytes"):
        await stack.coap.request(message, timeout=5)

    assert stack.sim.stats.commands == commands_before
    assert stack.sim.stats.datagrams_out == 0


async def test_options_plus_first_block_over_limit_refused(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    # 300 bytes of path fit alone, but not with a 256-byte Block1 block.
    message = Message(
        code=PUT, uri=aiocoap_server.uri("/" + "p" * 150 + "/" + "q" * 150), payload=BODY_2000
    )

    with pytest.raises(DatagramTooLarge):
        await stack.coap.request(message, timeout=5)

    assert stack.sim.stats.datagrams_out == 0


async def test_no_datagram_to_the_modem_exceeds_512_bytes(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    long_path = aiocoap_server.uri("/store?" + "k" * 200)
    await stack.coap.request(Message(code=PUT, uri=long_path, payload=BODY_2000), timeout=10)
    await stack.coap.request(
        Message(code=PUT, uri=aiocoap_server.uri("/store"), payload=BODY_2000), timeout=10
    )
    await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/large")), timeout=10)
    await stack.coap.request(
        Message(code=POST, uri=aiocoap_server.uri("/echo"), payload=b"x" * 1000), timeout=10
    )

    assert 256 < stack.sim.stats.max_datagram_out <= 512
    assert stack.coap.stats().max_datagram_out == stack.sim.stats.max_datagram_out


async def test_stale_and_undecodable_datagrams_are_counted_and_dropped(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=5)

    # Instance 1 is ours (the simulator hands out the lowest free id), 4 is not open.
    stack.sim.inject_raw(b"\r\n+GTCOAPDATA: 1,2,4000\r\n")  # too short for a CoAP header
    stack.sim.inject_raw(b"\r\n+GTCOAPDATA: 4,4,40000001\r\n")
    await eventually(lambda: stack.coap.stats().unknown_instance_in == 1)
    await eventually(lambda: stack.coap.stats().undecodable_in == 1)

    response = await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=5)
    assert response.code.is_successful()


def test_fast_settings_are_what_the_tests_assume() -> None:
    assert FAST.ack_timeout < 1.0


async def test_host_the_modem_cannot_open_fails_with_modem_error(stack: Stack) -> None:
    with pytest.raises(ModemError):
        await stack.coap.request(
            Message(code=GET, uri="coap://no-such-host.invalid:5683/x"), timeout=10
        )

    assert stack.coap.stats().instances_open == 0
