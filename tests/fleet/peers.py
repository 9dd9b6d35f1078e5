"""A plain paho client for the fleet tests: connects to any `host:port`, collects what
it receives, and reports the reason codes the broker gave (for the ACL tests)."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONNECT_TIMEOUT = 5.0


class FleetPeer:
    def __init__(
        self,
        address: str,
        *,
        mqtt5: bool = True,
        client_id: str | None = None,
        persistent: bool = False,
        username: str = "",
        password: str = "",
    ) -> None:
        host, _, port = address.rpartition(":")
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if mqtt5 else not persistent,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.pubacks: queue.Queue[tuple[int, Any]] = queue.Queue()
        self.refused: Any = None
        self.disconnected = threading.Event()
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        self.client.on_message = lambda client, userdata, message: self.inbox.put(message)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(list(codes))
        self.client.on_publish = lambda c, u, mid, code, props: self.pubacks.put((mid, code))
        properties = None
        if mqtt5 and persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect(
            host,
            int(port),
            keepalive=10,
            clean_start=not persistent if mqtt5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client.loop_start()
        self._connected.wait(CONNECT_TIMEOUT)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = reason
        self._connected.set()

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[Any]:
        """The SUBACK's reason codes (one per filter)."""
        self.client.subscribe(topic_filter, qos)
        return self.subacks.get(timeout=CONNECT_TIMEOUT)

    def publish(self, topic: str, payload: bytes, **properties: Any) -> Any:
        """Publish QoS 1 and return the PUBACK's reason code."""
        props = None
        if properties:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            for name, value in properties.items():
                setattr(props, name, value)
        info = self.client.publish(topic, payload, qos=1, properties=props)
        while True:
            mid, code = self.pubacks.get(timeout=CONNECT_TIMEOUT)
            if mid == info.mid:
                return code

    def receive(self, timeout: float = CONNECT_TIMEOUT) -> paho.MQTTMessage | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
