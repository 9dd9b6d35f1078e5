"""The front with the dedupe journal, in the narrow case it exists for: the answer was
published (and acknowledged by mosquitto) but the process stopped before it sent the
request's own PUBACK. The broker redelivers the request to the next process, which has
no memory of it but the journal."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.mqtt import FrontSettings, IncomingMessage, MqttClient, RequestFront
from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front


class AckLosingClient(MqttClient):
    """Hands out requests whose acknowledgement never leaves, as if the process died
    right after publishing the answer."""

    async def messages(self) -> AsyncIterator[IncomingMessage]:
        async for message in super().messages():
            yield dataclasses.replace(message, _ack=lambda: False)


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "memory-only"])
async def test_a_published_but_unacknowledged_answer_comes_from_the_journal(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory, tmp_path: Path, journal: bool
) -> None:
    state_dir = tmp_path / "state" if journal else None
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto, client_id="journal-gw")
    first = EchoHandler()
    front_settings = FrontSettings(base_topic=BASE, state_dir=state_dir, shutdown_grace=0.5)
    async with (
        AckLosingClient(settings) as client,
        RequestFront(client, first, front_settings),
    ):
        await client.wait_connected()
        peer.request({"id": "j1", "payload": "once"})
        topic, answer = await peer.receive_json()
    assert first.calls == ["j1"]

    again = EchoHandler()
    async with running_front(settings, again, state_dir=state_dir):
        redelivered_topic, redelivered = await peer.receive_json()
    assert (redelivered_topic, redelivered) == (topic, answer)
    # With the journal the handler (the CoAP server) is not reached a second time.
    assert again.calls == ([] if journal else ["j1"])


async def test_a_journaled_id_with_another_request_is_refused_after_a_restart(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto, client_id="journal-reuse-gw")
    async with running_front(settings, EchoHandler(), state_dir=state_dir):
        peer.request({"id": "j2", "payload": "first"})
        _, answer = await peer.receive_json()
    assert answer["ok"] is True

    again = EchoHandler()
    async with running_front(settings, again, state_dir=state_dir):
        peer.request({"id": "j2", "payload": "second"})
        _, refused = await peer.receive_json()
    assert refused["ok"] is False
    assert refused["error"]["kind"] == "invalid_request"
    assert "already used by a different request" in refused["error"]["message"]
    assert again.calls == []
