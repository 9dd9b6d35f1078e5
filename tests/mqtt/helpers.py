"""Test peers for the MQTT package: a plain paho client playing the bridge's user, and a
small request handler standing in for the service (JSON in, echo out)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import ssl
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.errors import CoapTimeout, ForbiddenTarget, InvalidRequest
from bridge.mqtt import (
    Envelope,
    FrontSettings,
    MqttClient,
    MqttClientSettings,
    MqttProtocol,
    RequestFront,
    TlsSettings,
)
from bridge.mqtt.topics import is_under_response_prefix
from tests.fixtures.mosquitto import MosquittoBroker, TlsFiles

BASE = "cb/gw1"


# The ids of `Peer.settle()`'s sentinel requests (a handler sees them as calls).
SENTINEL_PREFIX = "sentinel-"


class Peer:
    """A real paho client on its own network thread, as an application would use."""

    def __init__(
        self,
        broker: MosquittoBroker,
        *,
        protocol: MqttProtocol = MqttProtocol.V5,
        client_id: str | None = None,
        tls: TlsFiles | None = None,
        username: str = "",
        password: str = "",
        persistent: bool = False,
    ) -> None:
        self.protocol = protocol
        version = (
            MQTTProtocolVersion.MQTTv5
            if protocol is MqttProtocol.V5
            else MQTTProtocolVersion.MQTTv311
        )
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}",
            protocol=version,
            # 3.1.1 only: a persistent session keeps what arrives while we are away.
            clean_session=None if protocol is MqttProtocol.V5 else not persistent,
        )
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            context = ssl.create_default_context(cafile=str(tls.ca_file))
            context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
            self.client.tls_set_context(context)
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._subacks: queue.Queue[int] = queue.Queue()
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_message = lambda client, userdata, message: self.inbox.put(message)
        self.client.on_subscribe = lambda client, userdata, mid, *rest: self._subacks.put(mid)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise TimeoutError("peer could not connect")

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        self._subacks.get(timeout=5)

    def publish(
        self,
        topic: str,
        body: dict[str, Any] | bytes,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        properties = None
        if response_topic is not None or correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(5)

    def request(self, body: dict[str, Any], **kwargs: Any) -> None:
        self.publish(f"{BASE}/request", body, **kwargs)

    async def receive(self, wait: float = 5.0) -> paho.MQTTMessage:
        return await asyncio.to_thread(self.inbox.get, True, wait)

    async def receive_json(self, wait: float = 5.0) -> tuple[str, dict[str, Any]]:
        message = await self.receive(wait)
        return message.topic, json.loads(message.payload)

    async def settle(self, wait: float = 5.0) -> list[paho.MQTTMessage]:
        """Publish a sentinel request (`SENTINEL_PREFIX`...) and return what arrives before
        its answer. The front publishes its answers in order on one connection, so by
        then any answer it published earlier has arrived: no sleep to see that nothing
        more came. Needs a subscription to `<base>/response/#`."""
        sentinel = f"{SENTINEL_PREFIX}{uuid.uuid4().hex[:8]}"
        self.request({"id": sentinel})
        extra = []
        while True:
            message = await self.receive(wait)
            if message.topic == f"{BASE}/response/{sentinel}":
                return extra
            extra.append(message)

    async def quiet(self, seconds: float) -> list[paho.MQTTMessage]:
        """Whatever arrives within `seconds` (to check that nothing more comes)."""
        await asyncio.sleep(seconds)
        extra = []
        while not self.inbox.empty():
            extra.append(self.inbox.get_nowait())
        return extra

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class EchoHandler:
    """Stands in for the service: parses a little JSON, echoes, can block or fail."""

    gate: asyncio.Event | None = None
    calls: list[str] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    started: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def parse(self, payload: bytes) -> Envelope[dict[str, Any]]:
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise InvalidRequest(f"not JSON: {exc}") from exc
        request_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequest("no usable id")
        response_topic = body.get("response_topic")
        if response_topic is not None and not is_under_response_prefix(BASE, response_topic):
            return Envelope(request_id, rejection=InvalidRequest("response_topic outside"))
        if body.get("forbidden"):
            return Envelope(
                request_id, response_topic=response_topic, rejection=ForbiddenTarget("not allowed")
            )
        return Envelope(
            request_id,
            body,
            response_topic,
            observe=bool(body.get("observe")),
            cancel=bool(body.get("cancel")),
        )

    async def serve(self, envelope: Envelope[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        assert envelope.request is not None
        assert envelope.request_id is not None
        body = envelope.request
        self.calls.append(envelope.request_id)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.put_nowait(envelope.request_id)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if body.get("fail"):
                raise CoapTimeout("no response within 1 s")
            if envelope.observe:
                sequence = 0
                while True:
                    yield {"id": envelope.request_id, "ok": True, "observe": sequence}
                    sequence += 1
                    await asyncio.sleep(0.05)
            yield {"id": envelope.request_id, "ok": True, "payload": body.get("payload")}
        finally:
            self.active -= 1

    def error(self, request_id: str | None, exc: BaseException) -> dict[str, Any]:
        kind = getattr(exc, "kind", "internal")
        return {"id": request_id, "ok": False, "error": {"kind": kind, "message": str(exc)}}


def client_settings(
    broker: MosquittoBroker,
    *,
    client_id: str = "bridge-test",
    protocol: MqttProtocol = MqttProtocol.V5,
    tls: TlsSettings | None = None,
    **overrides: Any,
) -> MqttClientSettings:
    values: dict[str, Any] = {
        "client_id": client_id,
        "base_topic": BASE,
        "host": broker.host,
        "port": broker.port,
        "protocol": protocol,
        "tls": tls,
        "keepalive": 5,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
        "close_timeout": 1.0,
    }
    values.update(overrides)
    return MqttClientSettings(**values)


@contextlib.asynccontextmanager
async def running_front(
    settings: MqttClientSettings,
    handler: EchoHandler,
    *,
    connect: bool = True,
    **front_overrides: Any,
) -> AsyncIterator[tuple[MqttClient, RequestFront[dict[str, Any]]]]:
    front_values: dict[str, Any] = {
        "base_topic": BASE,
        "health_interval": 30.0,
        "health_min_gap": 0.05,
        "shutdown_grace": 0.5,
    }
    front_values.update(front_overrides)
    async with (
        MqttClient(settings) as client,
        RequestFront(client, handler, FrontSettings(**front_values)) as front,
    ):
        if connect:
            async with asyncio.timeout(5):
                await client.wait_connected()
        yield client, front


def served(handler: EchoHandler) -> list[str]:
    """The handler's calls but for `Peer.settle()`'s sentinels."""
    return [call for call in handler.calls if not call.startswith(SENTINEL_PREFIX)]
