"""Pool membership on its own clean-start connection, with two fronts on a real
mosquitto: the pool is served on `<client_id>-pool`, a member that leaves gets no
pooled requests, one that rejoins gets its share again, answers name the gateway."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from bridge.mqtt import MqttClient, RequestFront
from tests.fixtures.modem import eventually
from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import EchoHandler, client_settings, running_front

POOL = "cb/pool"
REPLIES = f"{POOL}/response/app"


@contextlib.asynccontextmanager
async def member(
    mosquitto: MosquittoBroker, name: str
) -> AsyncIterator[tuple[MqttClient, RequestFront[dict[str, Any]]]]:
    settings = client_settings(mosquitto, client_id=f"bridge-{name}")
    async with running_front(
        settings, EchoHandler(), gateway_id=name, shared_group="fleet", pool_topic=POOL
    ) as running:
        yield running


async def pooled(peer: Any, count: int, tag: str) -> Counter[str]:
    """Publish `count` pooled requests; how many each gateway answered."""
    for index in range(count):
        peer.publish(f"{POOL}/request", {"id": f"{tag}{index}"}, response_topic=REPLIES)
    served: Counter[str] = Counter()
    for _ in range(count):
        _, answer = await peer.receive_json()
        served[answer["gateway"]] += 1
    return served


async def test_membership_follows_what_the_gateway_wants(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{REPLIES}")
    async with member(mosquitto, "gw-a") as (_, a), member(mosquitto, "gw-b") as (_, b):
        # Members from the start (the service says otherwise while no modem is ready).
        await eventually(lambda: a.health_snapshot()["mqtt"]["pool"]["state"] == "member")
        await eventually(lambda: b.health_snapshot()["mqtt"]["pool"]["state"] == "member")
        assert set(await pooled(peer, 10, "both")) == {"gw-a", "gw-b"}

        a.set_pool_wanted(False)
        await eventually(lambda: a.health_snapshot()["mqtt"]["pool"]["state"] == "left")
        # Its session ended with its connection: every pooled request goes to gw-b.
        assert await pooled(peer, 10, "left") == Counter({"gw-b": 10})

        a.set_pool_wanted(True)
        await eventually(lambda: a.health_snapshot()["mqtt"]["pool"]["state"] == "member")
        assert set(await pooled(peer, 10, "back")) == {"gw-a", "gw-b"}
        assert a.health_snapshot()["mqtt"]["pool"]["joins"] == 2


async def test_a_gateway_own_topic_stays_on_its_persistent_session(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe("cb/gw1/response/#")
    async with member(mosquitto, "gw-a") as (_, front):
        await eventually(lambda: front.health_snapshot()["mqtt"]["pool"]["state"] == "member")
    # Down: a request for this gateway waits for it; pooled ones would not.
    peer.request({"id": "own-1"})
    async with member(mosquitto, "gw-a"):
        topic, answer = await peer.receive_json()
    assert topic == "cb/gw1/response/own-1"
    assert answer["gateway"] == "gw-a"
