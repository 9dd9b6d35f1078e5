"""CoAP requests through the modem stack (simulator on a pty) to real CoAP servers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiocoap import GET, POST, PUT, Message

from tests.coap.conftest import Stack
from tests.fixtures.coap_servers import LARGE_PAYLOAD, ROOT_TEXT, AiocoapServer, LibcoapServer
from tests.fixtures.modem import eventually

BODY_2000 = bytes((i * 13 + 5) % 251 for i in range(2000))


@pytest.fixture(params=["aiocoap", "libcoap"])
def server(request: pytest.FixtureRequest) -> Any:
    name = "aiocoap_server" if request.param == "aiocoap" else "libcoap_server"
    return request.getfixturevalue(name)


def expected_root(server: Any) -> bytes:
    if isinstance(server, LibcoapServer):
        return b"This is a test server made with libcoap"
    return ROOT_TEXT


async def test_get_root_and_well_known_core(stack: Stack, server: Any) -> None:
    root = await stack.coap.request(Message(code=GET, uri=server.uri("/")), timeout=5)
    core = await stack.coap.request(
        Message(code=GET, uri=server.uri("/.well-known/core")), timeout=5
    )

    assert root.code.is_successful()
    assert root.payload.startswith(expected_root(server))
    assert b"</time>" in core.payload
    assert stack.coap.stats().instances_opened == 1


async def test_block2_resource_arrives_byte_for_byte_in_256_byte_blocks(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    response = await stack.coap.request(
        Message(code=GET, uri=aiocoap_server.uri("/large")), timeout=10
    )

    assert response.payload == LARGE_PAYLOAD
    # Early Block2 negotiation: 3000 bytes in 256-byte blocks is 12 exchanges (the
    # server's own default of 1024 would be 3), so no datagram over the modem's limit.
    assert stack.sim.stats.datagrams_in == 12
    assert stack.sim.stats.datagrams_out == 12


async def test_block1_put_then_get_round_trips_on_aiocoap(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    put = await stack.coap.request(
        Message(code=PUT, uri=aiocoap_server.uri("/store"), payload=BODY_2000), timeout=10
    )
    got = await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/store")), timeout=10)

    assert put.code.is_successful()
    assert aiocoap_server.store.content == BODY_2000
    assert got.payload == BODY_2000
    assert stack.sim.stats.max_datagram_out <= 512


async def test_block1_put_then_block2_get_on_libcoap_example_data(
    stack: Stack, libcoap_server: LibcoapServer
) -> None:
    put = await stack.coap.request(
        Message(code=PUT, uri=libcoap_server.uri("/example_data"), payload=BODY_2000),
        timeout=10,
    )
    got = await stack.coap.request(
        Message(code=GET, uri=libcoap_server.uri("/example_data")), timeout=10
    )

    assert put.code.is_successful(), put
    assert got.payload == BODY_2000
    assert stack.sim.stats.max_datagram_out <= 512


async def test_separate_response_from_libcoap_async_is_acknowledged(
    stack: Stack, libcoap_server: LibcoapServer
) -> None:
    response = await stack.coap.request(
        Message(code=GET, uri=libcoap_server.uri("/async?1")), timeout=10
    )

    assert response.code.is_successful()
    # Empty ACK, then the response as a CON of its own: we sent the request and then
    # the ACK for that CON (else libcoap would retransmit it).
    assert stack.sim.stats.datagrams_in == 2
    await eventually(lambda: stack.sim.stats.datagrams_out == 2)


async def test_separate_response_from_aiocoap_slow(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    response = await stack.coap.request(
        Message(code=GET, uri=aiocoap_server.uri("/slow?0.5")), timeout=10
    )

    assert response.payload == b"slept 0.5 s"


async def test_post_echo(stack: Stack, aiocoap_server: AiocoapServer) -> None:
    response = await stack.coap.request(
        Message(code=POST, uri=aiocoap_server.uri("/echo"), payload=b"hello modem"), timeout=5
    )

    assert response.payload == b"hello modem"


async def test_fifty_concurrent_requests_pipeline_on_one_instance(
    make_stack: Any, aiocoap_server: AiocoapServer
) -> None:
    # 100 ms each way: done one after the other, 50 exchanges would take 10 s.
    stack: Stack = await make_stack(latency_ms=100.0)
    loop = asyncio.get_running_loop()
    started = loop.time()

    responses = await asyncio.gather(
        *(
            stack.coap.request(
                Message(code=POST, uri=aiocoap_server.uri("/echo"), payload=f"#{n}".encode()),
                timeout=15,
            )
            for n in range(50)
        )
    )
    elapsed = loop.time() - started

    assert [r.payload for r in responses] == [f"#{n}".encode() for n in range(50)]
    assert stack.coap.stats().instances_opened == 1
    assert elapsed < 5.0, f"50 exchanges took {elapsed:.1f} s: they were serialised"
