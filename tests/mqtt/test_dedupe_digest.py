"""Dedupe knows a redelivery from another request that reuses its id (real mosquitto)."""

from __future__ import annotations

import asyncio

from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front

REUSED = "id 'd1' is already used by a different request; choose a new id for each request"


async def test_same_id_with_another_body_while_in_flight_is_invalid_request(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler(gate=asyncio.Event())
    assert handler.gate is not None
    async with running_front(client_settings(mosquitto), handler):
        peer.request({"id": "d1", "payload": "first"})
        await asyncio.wait_for(handler.started.get(), 5)
        peer.request({"id": "d1", "payload": "second"})
        _, refused = await peer.receive_json()
        handler.gate.set()
        _, answered = await peer.receive_json()
    assert refused == {
        "id": "d1",
        "ok": False,
        "error": {"kind": "invalid_request", "message": REUSED},
    }
    assert answered == {"id": "d1", "ok": True, "payload": "first"}
    assert handler.calls == ["d1"]


async def test_same_id_with_another_body_after_the_answer_is_invalid_request(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler):
        peer.request({"id": "d1", "payload": "first"})
        _, first = await peer.receive_json()
        peer.request({"id": "d1", "payload": "second"})
        _, refused = await peer.receive_json()
        # The very same request again is still a redelivery, answered from the cache.
        peer.request({"id": "d1", "payload": "first"})
        _, again = await peer.receive_json()
    assert first == again == {"id": "d1", "ok": True, "payload": "first"}
    assert refused["error"] == {"kind": "invalid_request", "message": REUSED}
    assert handler.calls == ["d1"]


async def test_observing_again_after_the_stream_ended_starts_a_new_stream(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto), handler):
        peer.request({"id": "o1", "observe": True})
        assert (await peer.receive_json())[1]["observe"] == 0
        peer.request({"id": "o1", "cancel": True})
        while "error" not in (await peer.receive_json())[1]:
            pass

        peer.request({"id": "o1", "observe": True})
        second_stream = [(await peer.receive_json())[1] for _ in range(3)]
        peer.request({"id": "o1", "cancel": True})
        while "error" not in (await peer.receive_json())[1]:
            pass
    assert [answer["observe"] for answer in second_stream] == [0, 1, 2]
    assert handler.calls == ["o1", "o1"]
