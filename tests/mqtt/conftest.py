"""Fixtures of the MQTT tests: test peers (real paho clients) cleaned up after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.helpers import Peer

PeerFactory = Callable[..., Peer]


@pytest.fixture
def peer_factory() -> Iterator[PeerFactory]:
    peers: list[Peer] = []

    def make(broker: MosquittoBroker, **kwargs: Any) -> Peer:
        peer = Peer(broker, **kwargs)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop()
