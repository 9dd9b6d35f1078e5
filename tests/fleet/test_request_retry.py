"""`mqtt-coap-bridge request --pool --retry N --retry-after S` on a real mosquitto: a
pool member that swallows the first copy of a request (as a dead one would) and
answers the republished one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fixtures.mosquitto import MosquittoBroker
from tests.fleet.peers import FleetPeer


class SwallowingMember:
    """Serves `$share/fleet/coap-bridge/pool/request`; ignores the first copy of each id."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self.peer = FleetPeer(f"{broker.host}:{broker.port}")
        self.peer.client.on_message = self._on_message
        assert [
            code.value for code in self.peer.subscribe("$share/fleet/coap-bridge/pool/request")
        ] == [1]

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        request = json.loads(message.payload)
        with self._lock:
            first = request["id"] not in self.seen
            self.seen.append(request["id"])
        if first:
            return
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = message.properties.CorrelationData
        answer = {"id": request["id"], "ok": True, "code": "2.05", "gateway": "gw-x"}
        client.publish(
            message.properties.ResponseTopic, json.dumps(answer), 1, properties=properties
        )


@pytest.fixture
def member(mosquitto: MosquittoBroker) -> Iterator[SwallowingMember]:
    swallowing = SwallowingMember(mosquitto)
    yield swallowing
    swallowing.peer.close()


def request(broker: MosquittoBroker, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "request", "-H", broker.host]
    command += ["-p", str(broker.port), "--id", "r-1", "--pool", "-W", "3", *options]
    return subprocess.run(
        [*command, "coap://meters/v1/temp"], capture_output=True, text=True, timeout=60, check=False
    )


def test_an_unanswered_pooled_request_is_republished_with_the_same_id(
    mosquitto: MosquittoBroker, member: SwallowingMember
) -> None:
    done = request(mosquitto, "--retry", "2", "--retry-after", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": "r-1", "ok": True, "code": "2.05", "gateway": "gw-x"}
    assert "republished (1 of 2)" in done.stderr
    assert member.seen == ["r-1", "r-1"]


def test_without_retry_the_lost_request_is_reported(
    mosquitto: MosquittoBroker, member: SwallowingMember
) -> None:
    done = request(mosquitto)
    assert done.returncode == 2
    assert "no answer within 3 s" in done.stderr
    assert member.seen == ["r-1"]
