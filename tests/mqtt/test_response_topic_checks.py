"""MQTT 5 Response Topics the bridge must not answer on (real mosquitto, real paho)."""

from __future__ import annotations

import logging

import pytest

from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front, served


@pytest.mark.parametrize(
    ("response_topic", "reason"),
    [
        pytest.param(f"{BASE}/request", "request topic of this bridge", id="own-request-topic"),
        pytest.param("$SYS/broker/mine", "starting with '$'", id="dollar-sys"),
        pytest.param("$share/g/x", "starting with '$'", id="dollar-share"),
    ],
)
async def test_refused_response_topic_answers_on_the_default_topic(
    mosquitto: MosquittoBroker,
    peer_factory: PeerFactory,
    caplog: pytest.LogCaptureFixture,
    response_topic: str,
    reason: str,
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    with caplog.at_level(logging.WARNING, logger="bridge.mqtt.answers"):
        async with running_front(client_settings(mosquitto), handler):
            peer.request(
                {"id": "r1", "payload": "hi"},
                response_topic=response_topic,
                correlation_data=b"c-1",
            )
            message = await peer.receive()
            # Nothing read back as a request, no spurious invalid_request.
            assert await peer.settle() == []
    assert message.topic == f"{BASE}/response/r1"
    assert message.properties is not None
    assert message.properties.CorrelationData == b"c-1"
    assert message.payload == b'{"id": "r1", "ok": true, "payload": "hi"}'
    assert served(handler) == ["r1"]
    assert f"Response Topic {response_topic} refused" in caplog.text
    assert reason in caplog.text
