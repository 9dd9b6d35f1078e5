"""Observation (RFC 7641) through the modem: notifications, cancel with deregistration."""

from __future__ import annotations

import asyncio

import pytest
from aiocoap import GET, Message

from bridge.coap import Observation
from bridge.errors import ModemUnavailable
from tests.coap.conftest import Stack
from tests.fixtures.coap_servers import AiocoapServer, LibcoapServer
from tests.fixtures.modem import eventually


async def drain(observation: Observation) -> None:
    async for _ in observation:
        pass


async def test_observe_libcoap_time_three_notifications_then_cancel(
    stack: Stack, libcoap_server: LibcoapServer
) -> None:
    observation = stack.coap.observe(Message(code=GET, uri=libcoap_server.uri("/time")), timeout=5)
    received = []
    async with asyncio.timeout(10):
        async for notification in observation:
            received.append(notification)
            if len(received) == 4:  # the registration's response, then 3 notifications
                break
    observation.cancel()

    assert all(n.code.is_successful() for n in received)
    assert [n.opt.observe is not None for n in received] == [True] * 4
    assert len({n.payload for n in received[1:]}) == 3
    assert stack.coap.stats().observations == 0
    # Deregistered: libcoap (one notification a second) sends nothing more after the
    # answer to the deregistration.
    await asyncio.sleep(0.3)
    settled = stack.sim.stats.datagrams_in
    await asyncio.sleep(1.5)
    assert stack.sim.stats.datagrams_in == settled


async def test_cancel_deregisters_from_aiocoap_server(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    observation = stack.coap.observe(Message(code=GET, uri=aiocoap_server.uri("/time")), timeout=5)
    first = await anext(observation)
    second = await anext(observation)
    assert aiocoap_server.observers == 1

    observation.cancel()

    assert first.payload != second.payload
    await eventually(lambda: aiocoap_server.observers == 0)
    with pytest.raises(StopAsyncIteration):
        await anext(observation)


async def test_not_observable_resource_yields_only_the_response(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    observation = stack.coap.observe(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=5)

    responses = [n async for n in observation]

    assert len(responses) == 1
    assert responses[0].opt.observe is None


async def test_modem_reset_ends_observation_with_clear_error(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    observation = stack.coap.observe(Message(code=GET, uri=aiocoap_server.uri("/time")), timeout=5)
    await anext(observation)

    await stack.sim.reboot()

    with pytest.raises(ModemUnavailable, match="was reset"):
        await asyncio.wait_for(drain(observation), 5)
    assert stack.coap.stats().observations == 0
