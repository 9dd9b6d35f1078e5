"""The instance pool: reuse, LRU churn, the modem's own limit, idle close, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiocoap import GET, POST, Message

from bridge.coap import CoapTransportSettings
from bridge.errors import ModemUnavailable
from tests.coap.conftest import Stack, StackFactory
from tests.fixtures.coap_servers import AiocoapServer
from tests.fixtures.modem import eventually

ServerFactory = Callable[[], Awaitable[AiocoapServer]]


async def sample_max(stack: Stack, values: list[int]) -> None:
    while True:
        values.append(stack.sim.stats.instances_open)
        await asyncio.sleep(0.005)


async def echo(stack: Stack, server: AiocoapServer, text: str) -> bytes:
    response = await stack.coap.request(
        Message(code=POST, uri=server.uri("/echo"), payload=text.encode()), timeout=15
    )
    payload: bytes = response.payload
    return payload


async def test_eight_remotes_through_four_instances(
    make_stack: StackFactory, aiocoap_servers: ServerFactory
) -> None:
    stack = await make_stack(CoapTransportSettings(max_instances=4, ack_timeout=0.25))
    servers = [await aiocoap_servers() for _ in range(8)]
    seen: list[int] = []
    sampler = asyncio.create_task(sample_max(stack, seen))
    try:
        for round_ in range(3):
            answers = await asyncio.gather(
                *(
                    echo(stack, server, f"{round_}/{index}/{n}")
                    for index, server in enumerate(servers)
                    for n in range(3)
                )
            )
            expected = [f"{round_}/{index}/{n}".encode() for index in range(8) for n in range(3)]
            assert answers == expected
    finally:
        sampler.cancel()

    stats = stack.coap.stats()
    assert max(seen) <= 4
    assert stats.instances_open <= 4
    assert stats.instances_opened >= 8
    assert stats.instances_closed_lru >= 4


async def test_never_more_than_the_modem_reports_free(
    make_stack: StackFactory, aiocoap_servers: ServerFactory
) -> None:
    # The pool may use 4, but this modem only has 2.
    stack = await make_stack(CoapTransportSettings(max_instances=4), instances=2)
    servers = [await aiocoap_servers() for _ in range(4)]

    answers = await asyncio.gather(*(echo(stack, s, str(i)) for i, s in enumerate(servers)))

    assert answers == [b"0", b"1", b"2", b"3"]
    assert stack.coap.stats().instances_open <= 2


async def test_requests_to_one_remote_reuse_its_instance(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    for n in range(5):
        assert await echo(stack, aiocoap_server, str(n)) == str(n).encode()

    assert stack.coap.stats().instances_opened == 1
    assert stack.sim.stats.instances_open == 1


async def test_idle_instances_are_closed(
    make_stack: StackFactory, aiocoap_server: AiocoapServer
) -> None:
    stack = await make_stack(CoapTransportSettings(instance_idle_close=0.3))
    await echo(stack, aiocoap_server, "x")
    assert stack.sim.stats.instances_open == 1

    await eventually(lambda: stack.sim.stats.instances_open == 0, within=3.0)

    assert stack.coap.stats().instances_closed_idle == 1
    # Reopened transparently on next use.
    assert await echo(stack, aiocoap_server, "y") == b"y"


async def test_no_free_instance_waits_then_modem_unavailable(
    make_stack: StackFactory, aiocoap_servers: ServerFactory
) -> None:
    stack = await make_stack(CoapTransportSettings(max_instances=1))
    busy, other = await aiocoap_servers(), await aiocoap_servers()
    # An observation keeps its remote's instance busy.
    observation = stack.coap.observe(Message(code=GET, uri=busy.uri("/time")), timeout=5)
    await anext(observation)

    with pytest.raises(ModemUnavailable, match="no free client instance") as raised:
        await stack.coap.request(Message(code=GET, uri=other.uri("/")), timeout=0.5)

    assert f"127.0.0.1:{other.port} within 0.5 s" in str(raised.value)
    # Once the observation ends, the waiting remote gets the instance.
    observation.cancel()
    response = await stack.coap.request(Message(code=GET, uri=other.uri("/")), timeout=5)
    assert response.code.is_successful()


async def test_stats_count_in_flight_and_observations(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    slow = asyncio.create_task(
        stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/slow?0.5")), timeout=5)
    )
    observation = stack.coap.observe(Message(code=GET, uri=aiocoap_server.uri("/time")), timeout=5)
    await anext(observation)

    during = stack.coap.stats()
    await slow
    observation.cancel()
    after = stack.coap.stats()
    # The deregistration reaches the server before it shuts down.
    await eventually(lambda: aiocoap_server.observers == 0)

    assert during.as_dict() == {"instances_open": 1, "in_flight": 1, "observations": 1}
    assert after.in_flight == 0
    assert after.observations == 0
