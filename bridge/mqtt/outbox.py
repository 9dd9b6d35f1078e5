"""`Outbox`: the MQTT client's outgoing messages, from `publish()` to the broker's ack.

Each publish returns a future resolved when the broker acknowledged the message (PUBACK
for QoS 1, hand-off to the socket for QoS 0). While the link is not `ready`, messages
wait in a bounded queue (`max_queued`); on overflow the oldest is dropped, counted in
`stats.dropped_queued`, and its future fails with `PublishDropped`. Messages already
handed to paho when the link drops stay with paho, which resends them (DUP) after the
reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

from bridge.errors import BridgeError
from bridge.mqtt.plumbing import SocketPlumbing
from bridge.mqtt.stats import MqttStats

log = logging.getLogger(__name__)


class MqttClientError(BridgeError):
    """A message could not be published as asked."""


class PublishDropped(MqttClientError):
    """The outgoing queue overflowed while the broker was unreachable; this message went."""


class PublishRejected(MqttClientError):
    """The broker acknowledged the message with a failure reason code (MQTT 5)."""


class ClientClosed(MqttClientError):
    """The client was closed before the message was acknowledged."""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    done: asyncio.Future[None]


# Built once: paho's Properties constructor rebuilds these tables on every call.
_PROPERTY_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_CONTENT_TYPE_ID = 3
_CORRELATION_DATA_ID = 9


class PublishProperties(Properties):
    """MQTT 5 PUBLISH properties (Content Type, Correlation Data), encoded once.

    One of these goes with every answer. paho's `Properties` rebuilds its name and type
    tables in its constructor and scans them on each attribute set and in `pack()`,
    which cost more than the rest of a publish. This subclass shares the tables of one
    instance, sets its two values without that scan (they are checked here), and hands
    paho the bytes encoded up front (MQTT 5 §2.2.2: a property is its identifier
    followed by its value; strings and binary data are length-prefixed).
    """

    def __init__(self, correlation_data: bytes | None, content_type: str | None) -> None:
        for name in ("packetType", "types", "names", "properties"):
            object.__setattr__(self, name, getattr(_PROPERTY_TABLES, name))
        encoded = bytearray()
        if content_type:
            text = content_type.encode()
            object.__setattr__(self, "ContentType", content_type)
            encoded += bytes((_CONTENT_TYPE_ID,)) + len(text).to_bytes(2, "big") + text
        if correlation_data:
            object.__setattr__(self, "CorrelationData", correlation_data)
            encoded += (
                bytes((_CORRELATION_DATA_ID,))
                + len(correlation_data).to_bytes(2, "big")
                + correlation_data
            )
        packed = VariableByteIntegers.encode(len(encoded)) + bytes(encoded)  # type: ignore[no-untyped-call]
        object.__setattr__(self, "_packed", packed)

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "_packed")
        return packed


def consume_result(future: asyncio.Future[None]) -> None:
    """Done callback for a publish future that callers may not await."""
    # Retrieving the exception keeps asyncio from logging "exception was never
    # retrieved" while an awaiting caller still gets it.
    if not future.cancelled():
        future.exception()


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    # What consume_result would do as a done callback, done at once: the outbox's futures
    # fail only here, and a done callback costs every publish a loop turn's handle.
    future.set_exception(exc)
    future.exception()


class Outbox:
    """`ready`: hand publishes straight to paho (set by the session once the link is up
    and `flush()`ed). `closing`: refuse publishes that would only wait in the queue."""

    def __init__(
        self, client: paho.Client, plumbing: SocketPlumbing, max_queued: int, stats: MqttStats
    ) -> None:
        self._paho = client
        self._io = plumbing
        self._max_queued = max_queued
        self.stats = stats
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self.ready = False
        self.closing = False

    def __len__(self) -> int:
        return len(self._queue)

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ready:
            # The usual case, one per answer: straight to paho, as `_send` does.
            self._io.unwritten += 1
            info = self._paho.publish(topic, payload, qos, retain, properties)
            if qos == 0:
                done.set_result(None)
            else:
                self._pending[info.mid] = done
        elif self.closing:
            _fail(done, ClientClosed(f"client closed; not published to {topic}"))
        else:
            self._hold(_Outgoing(topic, payload, qos, retain, properties, done))
        return done

    def send_now(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Hand a QoS 1 message to paho before the queued ones (the link is up, not
        yet `ready`)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send(_Outgoing(topic, payload, 1, retain, None, done))

    def flush(self) -> None:
        """Hand every queued message to paho, oldest first."""
        while self._queue:
            self._send(self._queue.popleft())

    def acked(self, mid: int, reason_code: ReasonCode) -> None:
        """The broker's PUBACK (paho's on_publish) for `mid`."""
        done = self._pending.pop(mid, None)
        if done is None or done.done():
            return
        if reason_code.is_failure:
            _fail(done, PublishRejected(f"broker rejected publish mid {mid}: {reason_code}"))
        else:
            done.set_result(None)

    def fail_all(self) -> None:
        futures = [message.done for message in self._queue] + list(self._pending.values())
        self._queue.clear()
        self._pending.clear()
        for future in futures:
            if not future.done():
                _fail(future, ClientClosed("client closed before the broker acknowledged"))

    def _send(self, message: _Outgoing) -> None:
        self._io.unwritten += 1
        info = self._paho.publish(
            message.topic, message.payload, message.qos, message.retain, message.properties
        )
        if message.qos == 0:
            message.done.set_result(None)
        else:
            self._pending[info.mid] = message.done

    def _hold(self, message: _Outgoing) -> None:
        self._queue.append(message)
        if len(self._queue) > self._max_queued:
            dropped = self._queue.popleft()
            self.stats.dropped_queued += 1
            log.warning(
                "outgoing queue full (%d) while disconnected: dropped the oldest message to %s "
                "(%d dropped so far)",
                self._max_queued,
                dropped.topic,
                self.stats.dropped_queued,
            )
            if not dropped.done.done():
                _fail(dropped.done, PublishDropped(f"dropped from the full queue: {dropped.topic}"))
