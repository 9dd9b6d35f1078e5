"""Requests caught by a modem reset or unplug: resent on a new instance, or failed clearly.

Real peers: libcoap's coap-server (separate responses, Block1 uploads), the aiocoap
test server, the simulator rebooted or unplugged under the stack.
"""

from __future__ import annotations

import asyncio

import pytest
from aiocoap import GET, POST, PUT, Message

from bridge.errors import ModemUnavailable
from tests.coap.conftest import Stack
from tests.fixtures.coap_servers import AiocoapServer, LibcoapServer
from tests.fixtures.modem import eventually

# Big enough for dozens of 256-byte Block1 blocks, so a reboot lands mid-upload.
UPLOAD = bytes((i * 37 + 11) % 251 for i in range(16 * 1024))


async def test_get_waiting_for_a_separate_response_is_resent_after_a_reboot(
    stack: Stack, libcoap_server: LibcoapServer
) -> None:
    # libcoap ACKs at once and sends the 2.05 three seconds later, as a separate CON.
    request = asyncio.create_task(
        stack.coap.request(Message(code=GET, uri=libcoap_server.uri("/async?3")), timeout=9)
    )
    await eventually(lambda: stack.sim.stats.datagrams_in >= 1)  # the empty ACK

    await stack.sim.reboot()

    async with asyncio.timeout(8):
        response = await request
    assert str(response.code.dotted) == "2.05"
    assert stack.coap.stats().in_flight == 0


async def test_request_queued_behind_an_unsendable_one_is_modem_unavailable(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    await stack.sim.unplug(10.0)
    await eventually(lambda: not stack.modem.ready)
    first = asyncio.create_task(
        stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=1.5)
    )
    await eventually(lambda: stack.coap.stats().send_failures >= 1)

    # Started after the only recorded failure, and never sent either.
    with pytest.raises(ModemUnavailable, match=r"could not send to 127\.0\.0\.1"):
        await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=1.0)
    with pytest.raises(ModemUnavailable):
        await first


async def test_block1_put_cut_by_a_reboot_starts_over_and_stores_the_whole_body(
    stack: Stack, libcoap_server: LibcoapServer
) -> None:
    uri = libcoap_server.uri("/example_data")
    upload = asyncio.create_task(
        stack.coap.request(Message(code=PUT, uri=uri, payload=UPLOAD), timeout=30)
    )
    await eventually(lambda: stack.sim.stats.datagrams_in >= 6)

    await stack.sim.reboot()

    async with asyncio.timeout(30):
        response = await upload
    assert response.code.is_successful(), response
    stored = await stack.coap.request(Message(code=GET, uri=uri), timeout=30)
    assert stored.payload == UPLOAD


async def test_block1_post_cut_by_a_reboot_is_modem_unavailable_not_a_server_error(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    # aiocoap answers the first block from the new endpoint 4.08; a POST is not resent.
    upload = asyncio.create_task(
        stack.coap.request(
            Message(code=POST, uri=aiocoap_server.uri("/echo"), payload=UPLOAD),
            timeout=30,
        )
    )
    await eventually(lambda: stack.sim.stats.datagrams_in >= 6)

    await stack.sim.reboot()

    with pytest.raises(ModemUnavailable, match="part of the body"):
        async with asyncio.timeout(30):
            await upload
