"""The request front against a real mosquitto, with real paho clients as requesters."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.mqtt import MqttProtocol
from tests.fixtures.modem import eventually
from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front, served


async def test_mqtt5_response_topic_and_correlation_data(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe("app/replies/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler):
        peer.request(
            {"id": "r1", "payload": "hi"},
            response_topic="app/replies/7",
            correlation_data=b"\x00corr-1",
        )
        message = await peer.receive()
    assert message.topic == "app/replies/7"
    assert message.properties.CorrelationData == b"\x00corr-1"
    assert message.properties.ContentType == "application/json"
    assert json.loads(message.payload) == {"id": "r1", "ok": True, "payload": "hi"}
    assert handler.calls == ["r1"]


async def test_mqtt311_round_trip_with_body_response_topic(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto, protocol=MqttProtocol.V311)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto, protocol=MqttProtocol.V311)
    async with running_front(settings, EchoHandler()) as (_, front):
        peer.request({"id": "r2", "payload": 5, "response_topic": f"{BASE}/response/app-7"})
        topic, answer = await peer.receive_json()
        assert front.counters.as_dict() == {
            "requests": 1,
            "responses": 1,
            "errors": 0,
            "timeouts": 0,
            "dropped_queued": 0,
            "dedupe_hits": 0,
            "replayed_after_restart": 0,
        }
    assert topic == f"{BASE}/response/app-7"
    assert answer == {"id": "r2", "ok": True, "payload": 5}


@pytest.mark.parametrize(
    ("request_id", "suffix"),
    [
        ("abc", "abc"),
        # An id that cannot name a topic still gets its answer, on response/invalid.
        ("a+b", "invalid"),
    ],
)
async def test_default_topic_is_response_slash_id(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory, request_id: str, suffix: str
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    async with running_front(client_settings(mosquitto), EchoHandler()):
        peer.request({"id": request_id})
        topic, answer = await peer.receive_json()
    assert topic == f"{BASE}/response/{suffix}"
    assert answer["id"] == request_id


async def test_invalid_payload_is_answered_on_response_invalid(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler) as (_, front):
        peer.request(b"{not json")
        topic, answer = await peer.receive_json()
        peer.request({"no": "id"})
        topic2, answer2 = await peer.receive_json()
        assert front.counters.errors == 2
    assert topic == topic2 == f"{BASE}/response/invalid"
    assert answer["id"] is None
    assert answer["error"]["kind"] == "invalid_request"
    assert answer2["id"] is None
    assert handler.calls == []


async def test_rejection_with_known_id_goes_to_the_requests_topic(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler):
        peer.request({"id": "f1", "forbidden": True, "response_topic": f"{BASE}/response/mine"})
        topic, answer = await peer.receive_json()
    assert topic == f"{BASE}/response/mine"
    assert answer["error"]["kind"] == "forbidden_target"
    assert handler.calls == []


async def test_handler_error_becomes_one_error_object(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    async with running_front(client_settings(mosquitto), EchoHandler()) as (_, front):
        peer.request({"id": "t1", "fail": True})
        _, answer = await peer.receive_json()
        assert await peer.settle() == []
        assert (front.counters.errors, front.counters.timeouts) == (1, 1)
    assert answer["error"]["kind"] == "timeout"


async def test_redelivered_id_is_served_once_and_answered_twice(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler(gate=asyncio.Event())
    assert handler.gate is not None
    async with running_front(client_settings(mosquitto), handler) as (_, front):
        # Second copy while the first is in flight: it attaches to it.
        peer.request({"id": "d1", "payload": 1})
        await asyncio.wait_for(handler.started.get(), 5)
        peer.request({"id": "d1", "payload": 1})
        await eventually(lambda: front.counters.dedupe_hits == 1)
        handler.gate.set()
        first = [await peer.receive_json(), await peer.receive_json()]
        # Third copy after the answer: from the dedupe cache.
        peer.request({"id": "d1", "payload": 1})
        third = await peer.receive_json()
        assert await peer.settle() == []
    assert served(handler) == ["d1"]
    assert [answer for _, answer in [*first, third]] == [{"id": "d1", "ok": True, "payload": 1}] * 3


async def test_back_pressure_bounds_concurrency_and_answers_all(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler(gate=asyncio.Event())
    assert handler.gate is not None
    async with running_front(client_settings(mosquitto), handler, max_in_flight=2) as (_, front):
        for index in range(20):
            peer.request({"id": f"bp{index}"})
        # All taken, two of them being served (and never more, see max_active below).
        await eventually(lambda: front.counters.requests == 20 and handler.active == 2)
        assert front.waiting == 18
        handler.gate.set()
        answers = {(await peer.receive_json())[1]["id"] for _ in range(20)}
    assert answers == {f"bp{index}" for index in range(20)}
    assert handler.max_active == 2
    assert sorted(handler.calls) == sorted(answers)


async def test_observe_streams_until_cancelled(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler, max_in_flight=1) as (_, front):
        peer.request({"id": "o1", "observe": True})
        notifications = [(await peer.receive_json())[1] for _ in range(3)]
        # The stream released its slot after the first answer: other requests still run.
        peer.request({"id": "plain"})
        while (answer := (await peer.receive_json())[1])["id"] != "plain":
            pass
        peer.request({"id": "o1", "cancel": True})
        while "error" not in (answer := (await peer.receive_json())[1]):
            pass
        assert await peer.settle() == []
        assert front.serving == 0
    assert [n["observe"] for n in notifications] == [0, 1, 2]
    assert answer == {
        "id": "o1",
        "ok": False,
        "error": {"kind": "cancelled", "message": "request o1: cancelled by a cancel request"},
    }
    assert handler.active == 0


async def test_cancel_for_unknown_id_is_an_invalid_request(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    async with running_front(client_settings(mosquitto), EchoHandler()):
        peer.request({"id": "ghost", "cancel": True})
        topic, answer = await peer.receive_json()
    assert topic == f"{BASE}/response/ghost"
    assert answer["error"]["kind"] == "invalid_request"


async def test_shutdown_cancels_requests_being_served(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler(gate=asyncio.Event())
    async with running_front(client_settings(mosquitto), handler, shutdown_grace=0.2):
        peer.request({"id": "s1"})
        await asyncio.wait_for(handler.started.get(), 5)
    _, answer = await peer.receive_json()
    assert answer["error"]["kind"] == "cancelled"


async def test_health_unsolicited_and_status(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    watcher = peer_factory(mosquitto)
    watcher.subscribe(f"{BASE}/health")
    async with running_front(client_settings(mosquitto), EchoHandler()) as (_, front):
        # The health of the connect is at the broker (and retained) once it reached the
        # watcher, whether live or retained.
        await watcher.receive()
        # At the broker before anyone subscribes: not retained, so never delivered.
        await asyncio.wait_for(front.publish_unsolicited({"datagram": "hex:40"}), 5)
        peer.subscribe(f"{BASE}/status")
        peer.subscribe(f"{BASE}/health")
        status = await peer.receive()
        health = await peer.receive()
        peer.subscribe(f"{BASE}/unsolicited")
        front.publish_unsolicited({"datagram": "hex:41"})
        unsolicited = await peer.receive()
        front.health_changed()
        changed = await peer.receive()
    assert (status.topic, status.retain) == (f"{BASE}/status", True)
    assert json.loads(status.payload) == {"state": "online"}
    assert (health.topic, health.retain) == (f"{BASE}/health", True)
    assert json.loads(health.payload)["counters"]["requests"] == 0
    assert json.loads(unsolicited.payload) == {"datagram": "hex:41"}
    assert changed.topic == f"{BASE}/health"
    assert not changed.retain


async def test_shared_subscription_serves_the_pool_topic(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto)
    async with running_front(settings, EchoHandler(), shared_group="g1", pool_topic="pool/a") as (
        _,
        front,
    ):
        # The pool is served on a connection of its own: wait until it is subscribed.
        await eventually(lambda: front.health_snapshot()["mqtt"]["pool"]["state"] == "member")
        peer.publish("pool/a/request", {"id": "p1"})
        topic, answer = await peer.receive_json()
    assert (topic, answer["id"]) == (f"{BASE}/response/p1", "p1")
