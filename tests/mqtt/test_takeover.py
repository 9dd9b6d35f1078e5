"""Two clients with one client id: each takes the session from the other. The clients
must slow down (backoff not reset by a CONNACK whose link does not hold) and say so."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge.mqtt import MqttClient, MqttProtocol
from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.helpers import client_settings

WINDOW = 4.0


# mosquitto 2.0.11 ends the older connection with "Unspecified error" even on MQTT 5
# (not reason 142, "Session taken over"): the repeated quick drops give it away.
EXPECTED = "another client with client id twin may have taken over the session"


@pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])
async def test_a_session_takeover_backs_off_and_is_named(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture, protocol: MqttProtocol
) -> None:
    settings = client_settings(
        mosquitto, client_id="twin", protocol=protocol, reconnect_initial=0.1, reconnect_max=5
    )
    caplog.set_level(logging.INFO, logger="bridge.mqtt")
    async with MqttClient(settings) as first, MqttClient(settings) as second:
        started = time.monotonic()
        while EXPECTED not in caplog.text:
            assert time.monotonic() - started < WINDOW, caplog.text[-3000:]
            await asyncio.sleep(0.05)
        # Measured over a fixed window: with the backoff reset on every CONNACK the two
        # took the session from each other about every 0.1 s (dozens of connects).
        await asyncio.sleep(max(0.0, WINDOW - (time.monotonic() - started)))
        connects = first.stats.connects + second.stats.connects
    assert connects <= 16, connects
