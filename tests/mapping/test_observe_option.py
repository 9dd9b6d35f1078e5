"""`options.observe: 0` registers an observation: the request is served as one.

Served over the whole stack (simulator, L610 driver, ModemCoap) against the aiocoap
test server's observable /time, so a stream nobody reads would show as an observer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.coap.router import Lane, ModemRouter
from bridge.config import Settings
from bridge.mapping import CoapRequests, ParsedRequest, parse_request
from tests.fixtures.coap_servers import AiocoapServer
from tests.fixtures.modem import eventually, fast_engine, make_l610
from tests.fixtures.simulator import SimulatorFactory

from .conftest import make_settings


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("explicit", [{}, {"observe": False}])
def test_observe_option_zero_makes_the_request_an_observation(
    settings: Settings, explicit: dict[str, Any]
) -> None:
    body = {"id": "o1", "uri": "coap://meters/t", "options": {"observe": 0}, **explicit}
    request = parse_request(encode(body), settings)

    assert isinstance(request, ParsedRequest)
    assert request.observe is True
    # Registered by the observation itself, not sent as an extra option.
    assert all(option.number != 6 for option in request.options)


@pytest.fixture
async def lane(simulator_factory: SimulatorFactory) -> AsyncIterator[Lane]:
    sim = await simulator_factory()
    async with (
        fast_engine(sim.port_path) as at,
        make_l610(at) as modem,
        ModemCoap(modem, CoapTransportSettings(ack_timeout=0.25)) as coap,
    ):
        yield Lane("modem", modem, coap)


async def test_observe_option_stream_is_read_and_deregistered_when_it_ends(
    lane: Lane, aiocoap_server: AiocoapServer
) -> None:
    coap = lane.coap
    settings = make_settings(allow_hosts=["127.0.0.1"])
    router = ModemRouter(["modem"])
    router.add(lane)
    handler = CoapRequests(settings, router)
    uri = aiocoap_server.uri("/time")
    envelope = handler.parse(
        encode({"id": "o1", "uri": uri, "options": {"observe": 0}, "timeout": 20})
    )
    assert envelope.observe

    answers = handler.serve(envelope)
    first = await anext(answers)
    second = await anext(answers)
    assert "observe" in first
    assert "observe" in second
    assert coap.stats().observations == 1

    await answers.aclose()  # what a cancel request or the timeout does

    assert coap.stats().observations == 0
    await eventually(lambda: aiocoap_server.observers == 0)
