"""Persistent session, ack-after-answer, broker restarts, Last Will, the bounded queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.mqtt import MqttClient, MqttProtocol, PublishDropped
from tests.fixtures.mosquitto import MosquittoBroker
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front, served

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def bridge_process(port: int, client_id: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A front in a child process (tests/mqtt/bridge_process.py), SIGKILLed at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mqtt.bridge_process",
        str(port),
        client_id,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert await read_line(process) == "ready"
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 10)
    return line.decode().strip()


@pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])
async def test_requests_sent_while_down_are_served_after_start(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory, protocol: MqttProtocol
) -> None:
    peer = peer_factory(mosquitto, protocol=protocol)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto, protocol=protocol)
    async with running_front(settings, EchoHandler()):
        pass  # creates the session and its subscription
    for index in range(3):
        peer.request({"id": f"late{index}"})
    handler = EchoHandler()
    async with running_front(settings, handler):
        answers = {(await peer.receive_json())[1]["id"] for _ in range(3)}
    assert answers == {"late0", "late1", "late2"}
    assert sorted(handler.calls) == sorted(answers)


async def test_request_unanswered_by_a_killed_bridge_is_redelivered(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    async with bridge_process(mosquitto.port, "bridge-killed") as process:
        peer.request({"id": "k1", "payload": "again"})
        assert await read_line(process) == "serving k1"
        process.send_signal(signal.SIGKILL)
        await process.wait()
    handler = EchoHandler()
    async with running_front(client_settings(mosquitto, client_id="bridge-killed"), handler):
        topic, answer = await peer.receive_json()
    assert (topic, answer) == (f"{BASE}/response/k1", {"id": "k1", "ok": True, "payload": "again"})
    assert handler.calls == ["k1"]


async def test_answered_request_is_not_redelivered(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(mosquitto)
    async with running_front(settings, EchoHandler()):
        peer.request({"id": "once"})
        await peer.receive_json()
    handler = EchoHandler()
    async with running_front(settings, handler):
        # A redelivery would come before the sentinel, new in the session.
        assert await peer.settle() == []
    assert served(handler) == []


async def test_last_will_on_abrupt_death(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/status")
    async with bridge_process(mosquitto.port, "bridge-lwt") as process:
        online = await peer.receive()
        process.send_signal(signal.SIGKILL)
        await process.wait()
        offline = await peer.receive()
    assert json.loads(online.payload) == {"state": "online"}
    assert json.loads(offline.payload) == {"state": "offline"}
    late = peer_factory(mosquitto)
    late.subscribe(f"{BASE}/status")
    retained = await late.receive()
    assert retained.retain
    assert json.loads(retained.payload) == {"state": "offline"}


async def test_clean_close_publishes_offline(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    async with running_front(client_settings(mosquitto), EchoHandler()):
        pass
    peer = peer_factory(mosquitto)
    peer.subscribe(f"{BASE}/status")
    retained = await peer.receive()
    assert json.loads(retained.payload) == {"state": "offline"}


async def test_broker_restart_mid_session(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    handler = EchoHandler(gate=asyncio.Event())
    assert handler.gate is not None
    async with running_front(client_settings(mosquitto), handler) as (client, _):
        peer = peer_factory(mosquitto, client_id="peer-restart")
        peer.subscribe(f"{BASE}/response/#")
        peer.request({"id": "before"})
        await asyncio.wait_for(handler.started.get(), 5)
        reconnected = asyncio.Event()
        client.add_connection_listener(lambda up: up and reconnected.set())
        # The request is being served, unacked, when the broker goes away and comes back.
        mosquitto.restart()
        await asyncio.wait_for(reconnected.wait(), 5)
        peer.stop()
        peer = peer_factory(mosquitto, client_id="peer-restart")
        peer.subscribe(f"{BASE}/response/#")
        handler.gate.set()
        peer.request({"id": "after"})
        ids = set()
        async with asyncio.timeout(5):
            while ids != {"before", "after"}:
                ids.add((await peer.receive_json())[1]["id"])
    # Redelivered "before" attached to the running one: served once.
    assert sorted(handler.calls) == ["after", "before"]
    assert client.stats.connection_losses >= 1


async def test_queue_while_down_is_bounded_and_flushed_on_connect(
    mosquitto: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    watcher_options = {"protocol": MqttProtocol.V311, "client_id": "watcher", "persistent": True}
    watcher = peer_factory(mosquitto, **watcher_options)
    watcher.subscribe("q/#")
    watcher.stop()
    mosquitto.stop()
    settings = client_settings(mosquitto, max_queued=2)
    async with MqttClient(settings) as client:
        published = [client.publish(f"q/{index}", b"x") for index in range(3)]
        assert client.queued == 2
        with pytest.raises(PublishDropped):
            await published[0]
        assert client.stats.dropped_queued == 1
        await asyncio.sleep(0.5)  # a few refused connection attempts
        assert client.queued == 2
        mosquitto.start()
        await asyncio.wait_for(asyncio.gather(*published[1:]), 10)
    watcher = peer_factory(mosquitto, **watcher_options)
    topics = sorted([(await watcher.receive()).topic for _ in range(2)])
    assert topics == ["q/1", "q/2"]
    assert await watcher.quiet(0.2) == []
