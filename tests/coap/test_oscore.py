"""OSCORE through the modem stack (simulator on a pty) to an aiocoap OSCORE server process."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiocoap import GET, PUT, Message

from bridge.coap import ModemCoap
from bridge.coap.oscore import SecurityContexts
from bridge.errors import Cancelled, SecurityError
from tests.coap.conftest import FAST, Stack, StackFactory
from tests.fixtures.coap_servers import ROOT_TEXT
from tests.fixtures.modem import eventually, fast_engine, make_l610
from tests.fixtures.oscore_server import WRONG_SECRET_HEX, OscoreServer
from tests.fixtures.simulator import SimulatorFactory

BODY_4K = bytes((i * 13 + 5) % 251 for i in range(4096))
ALIAS = "secure"


@pytest.fixture
def contexts(oscore_server: OscoreServer) -> Iterator[SecurityContexts]:
    with SecurityContexts.load({ALIAS: str(oscore_server.client_context())}) as loaded:
        yield loaded


@pytest.fixture
async def protected(make_stack: StackFactory, contexts: SecurityContexts) -> Stack:
    return await make_stack(oscore=contexts)


async def server_counts(stack: Stack, server: OscoreServer) -> dict[str, int]:
    response = await stack.coap.request(Message(code=GET, uri=server.uri("/stats")), timeout=5)
    counts: dict[str, int] = json.loads(response.payload)
    return counts


async def test_get_is_protected(protected: Stack, oscore_server: OscoreServer) -> None:
    response = await protected.coap.request(
        Message(code=GET, uri=oscore_server.uri("/")), timeout=5, oscore=ALIAS
    )

    assert response.code.is_successful()
    assert response.payload == ROOT_TEXT
    counts = await server_counts(protected, oscore_server)
    assert counts["protected"] == 1
    assert counts["plaintext"] == 0


async def test_4k_put_then_get_back_in_inner_blocks_that_fit_one_datagram(
    protected: Stack, oscore_server: OscoreServer
) -> None:
    put = await protected.coap.request(
        Message(code=PUT, uri=oscore_server.uri("/store"), payload=BODY_4K),
        timeout=20,
        oscore=ALIAS,
    )
    got = await protected.coap.request(
        Message(code=GET, uri=oscore_server.uri("/store")), timeout=20, oscore=ALIAS
    )

    assert put.code.is_successful()
    assert got.payload == BODY_4K
    # 4096 bytes in 256-byte inner blocks each way: 16 + 16 protected exchanges, none
    # with outer Block options, and every datagram within the modem's 512 bytes (the
    # simulator drops larger ones from the network, which would time the GET out).
    counts = await server_counts(protected, oscore_server)
    assert counts["protected"] == 32
    assert counts["outer_block"] == 0
    assert protected.sim.stats.max_datagram_out <= 512


async def test_observe_is_protected(protected: Stack, oscore_server: OscoreServer) -> None:
    unmatched: list[Any] = []
    protected.coap.set_unmatched_handler(unmatched.append)
    observation = protected.coap.observe(
        Message(code=GET, uri=oscore_server.uri("/time")), timeout=5, oscore=ALIAS
    )
    payloads = []
    async for notification in observation:
        payloads.append(notification.payload)
        if len(payloads) == 3:
            break
    observing = await server_counts(protected, oscore_server)
    observation.cancel()

    assert all(payload.startswith(b"tick ") for payload in payloads)
    assert len(set(payloads)) == 3
    await eventually(lambda: protected.coap.stats().observations == 0)
    assert observing["observers"] == 1
    # The server forgets the observation once its next notification meets an RST.
    for _ in range(60):
        if not (await server_counts(protected, oscore_server))["observers"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the server still has an observer 3 s after the cancel")
    # The notification that met the RST is not handed on: it cannot be read.
    assert unmatched == []


async def test_separate_response_is_protected(
    protected: Stack, oscore_server: OscoreServer
) -> None:
    response = await protected.coap.request(
        Message(code=GET, uri=oscore_server.uri("/slow?0.5")), timeout=5, oscore=ALIAS
    )

    assert response.payload == b"slept 0.5 s"


async def test_wrong_key_is_a_security_error_naming_the_alias(
    make_stack: StackFactory, oscore_server: OscoreServer
) -> None:
    wrong = oscore_server.client_context(secret_hex=WRONG_SECRET_HEX)
    with SecurityContexts.load({ALIAS: str(wrong)}) as contexts:
        stack = await make_stack(oscore=contexts)
        with pytest.raises(SecurityError, match=rf"{ALIAS}.*4\.00 Bad Request.*without OSCORE"):
            await stack.coap.request(
                Message(code=GET, uri=oscore_server.uri("/")), timeout=5, oscore=ALIAS
            )


async def test_plaintext_request_gets_the_servers_401(
    protected: Stack, oscore_server: OscoreServer
) -> None:
    response = await protected.coap.request(
        Message(code=GET, uri=oscore_server.uri("/")), timeout=5
    )

    assert str(response.code.dotted) == "4.01"
    assert (await server_counts(protected, oscore_server))["plaintext"] == 1


async def test_context_that_cannot_be_loaded_fails_its_requests(
    make_stack: StackFactory, oscore_server: OscoreServer, tmp_path: Path
) -> None:
    broken = oscore_server.client_context()
    (broken / "settings.json").write_text('{"sender-id_hex": "", "recipient-id_hex": "01"}')
    with SecurityContexts.load({ALIAS: str(broken)}) as contexts:
        stack = await make_stack(oscore=contexts)
        with pytest.raises(SecurityError, match=rf"{ALIAS} in {broken} cannot be loaded"):
            await stack.coap.request(
                Message(code=GET, uri=oscore_server.uri("/")), timeout=5, oscore=ALIAS
            )


def test_a_context_in_use_cannot_be_loaded_again(oscore_server: OscoreServer) -> None:
    directory = str(oscore_server.client_context())
    with (
        SecurityContexts.load({ALIAS: directory}),
        SecurityContexts.load({ALIAS: directory}) as second,
        pytest.raises(SecurityError, match="in use by another process"),
    ):
        second.context(ALIAS)


async def _get_root_times(
    simulator_factory: SimulatorFactory, server: OscoreServer, directory: Path, times: int
) -> None:
    """`times` protected GETs from a fresh stack with the context loaded from `directory`."""
    sim = await simulator_factory()
    async with AsyncExitStack() as exits:
        contexts = exits.enter_context(SecurityContexts.load({ALIAS: str(directory)}))
        at = await exits.enter_async_context(fast_engine(sim.port_path))
        modem = await exits.enter_async_context(make_l610(at))
        coap = await exits.enter_async_context(ModemCoap(modem, FAST, oscore=contexts))
        for _ in range(times):
            response = await coap.request(
                Message(code=GET, uri=server.uri("/")), timeout=5, oscore=ALIAS
            )
            assert response.payload == ROOT_TEXT


async def test_sequence_numbers_survive_a_restart(
    simulator_factory: SimulatorFactory, oscore_server: OscoreServer
) -> None:
    directory = oscore_server.client_context()
    await _get_root_times(simulator_factory, oscore_server, directory, 3)
    # A second incarnation: the server's replay window refuses any sequence number
    # the first one used.
    await _get_root_times(simulator_factory, oscore_server, directory, 3)


async def test_a_copied_context_is_refused_as_a_replay(
    simulator_factory: SimulatorFactory, oscore_server: OscoreServer
) -> None:
    directory = oscore_server.client_context()
    backup = directory.with_name(directory.name + "-backup")
    shutil.copytree(directory, backup)
    await _get_root_times(simulator_factory, oscore_server, directory, 2)

    with pytest.raises(SecurityError, match=r"4\.01 Unauthorized \(\"Replay detected\"\)"):
        await _get_root_times(simulator_factory, oscore_server, backup, 1)


async def test_shutdown_cancels_a_protected_request_in_flight(
    simulator_factory: SimulatorFactory, contexts: SecurityContexts, oscore_server: OscoreServer
) -> None:
    sim = await simulator_factory()
    async with fast_engine(sim.port_path) as at, make_l610(at) as modem:
        async with ModemCoap(modem, FAST, oscore=contexts) as coap:
            request = asyncio.ensure_future(
                coap.request(
                    Message(code=GET, uri=oscore_server.uri("/slow?5")), timeout=10, oscore=ALIAS
                )
            )
            await eventually(lambda: sim.stats.datagrams_in >= 1)
        with pytest.raises(Cancelled, match="shutting down"):
            await request
