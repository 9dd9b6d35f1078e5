"""`MqttClient`: paho-mqtt 2.2 driven from the asyncio loop, with a persistent session.

Driving: paho's external-loop hooks, as in paho's `examples/loop_asyncio.py` — the
socket callbacks register the socket with `loop.add_reader` / `loop.add_writer`,
`loop_read` / `loop_write` run when it is ready, and a task calls `loop_misc` every
second (keepalive). Every paho call happens on the loop thread except the blocking
`reconnect()` (TCP connect + TLS handshake), which runs in the default executor while
the loop thread leaves the paho client alone (nothing is handed to paho while the
link is not up); the socket callbacks it fires are bounced to the loop thread.

Session: MQTT 3.1.1 `clean_session=False`; MQTT 5 `clean_start=False` on every
connect with `SessionExpiryInterval` from the settings. Subscriptions are sent on the
first connect of the process (they may have changed with the config) and again on
every connect where the broker reports no session present. Enter the front right
after the client so its subscriptions are known before the first connect.

Acknowledgement: the client is built with `manual_ack=True`. Each `IncomingMessage`
carries `ack()`, which sends the PUBACK only if the connection the message arrived on
is still up; after a reconnect the broker redelivers unacknowledged messages itself,
so acking a stale packet id would be wrong.

Status: the Last Will is `<base>/status` `{"state": "offline"}` (retained, QoS 1);
`{"state": "online"}` is published retained on every connect, and the offline one
explicitly on a clean close (a normal DISCONNECT does not fire the will).

Publishing: `publish()` returns a future resolved when the broker acknowledged the
message (PUBACK for QoS 1, hand-off to the socket for QoS 0). While the link is down
messages wait in a bounded queue (`max_queued`); on overflow the oldest is dropped,
counted in `stats.dropped_queued`, and its future fails with `PublishDropped`.
Messages already handed to paho when the link drops stay with paho, which resends
them (DUP) after the reconnect.

Reconnect: forever, exponential backoff from `reconnect_initial` to `reconnect_max`
with jitter (each wait is drawn from [d/2, d]), each attempt and failure logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

from bridge.errors import BridgeError
from bridge.mqtt.settings import MqttClientSettings, MqttProtocol
from bridge.mqtt.topics import status_topic, topic_problem

log = logging.getLogger(__name__)

ONLINE = json.dumps({"state": "online"}).encode()
OFFLINE = json.dumps({"state": "offline"}).encode()
MISC_INTERVAL = 1.0


class MqttClientError(BridgeError):
    """A message could not be published as asked."""


class PublishDropped(MqttClientError):
    """The outgoing queue overflowed while the broker was unreachable; this message went."""


class PublishRejected(MqttClientError):
    """The broker acknowledged the message with a failure reason code (MQTT 5)."""


class ClientClosed(MqttClientError):
    """The client was closed before the message was acknowledged."""


@dataclass(frozen=True)
class IncomingMessage:
    """One PUBLISH received from the broker."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    # MQTT 5 request/response properties; None on MQTT 3.1.1 or when absent.
    response_topic: str | None
    correlation_data: bytes | None
    _ack: Callable[[], bool] = field(repr=False, compare=False)

    def ack(self) -> bool:
        """Send the PUBACK. False when the connection it came on is gone (it will be
        redelivered) — never raises."""
        return self._ack()


@dataclass
class ClientStats:
    connects: int = 0
    connection_losses: int = 0
    received: int = 0
    dropped_queued: int = 0


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


def _consume_result(future: asyncio.Future[None]) -> None:
    # Callers may fire and forget a publish; retrieving the exception here keeps asyncio
    # from logging "exception was never retrieved" while an awaiting caller still gets it.
    if not future.cancelled():
        future.exception()


class MqttClient:
    """`async with MqttClient(settings) as client:` — connects in the background.

    Entering does not wait for the broker (it may be down; the client keeps trying);
    use `await client.wait_connected()` where a live link is needed.
    """

    def __init__(self, settings: MqttClientSettings) -> None:
        self._settings = settings
        self._status_topic = status_topic(settings.base_topic)
        self.stats = ClientStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._paho = self._make_paho()
        self._subscriptions: dict[str, int] = {}
        self._subscribed: set[str] = set()  # filters sent to the broker by this process
        self._awaiting_suback: int | None = None
        self._generation = 0  # bumped on every CONNACK; stale acks are dropped
        self._connected = False  # CONNACK received on the current socket
        self._ready = False  # ...and the queue flushed: publish goes straight to paho
        self._link_up = asyncio.Event()
        self._link_down = asyncio.Event()
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._inbox: asyncio.Queue[IncomingMessage | None] = asyncio.Queue()
        self._listeners: list[Callable[[bool], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._attempt: asyncio.Future[MQTTErrorCode] | None = None
        self._write_scheduled = False
        # Whether the socket is registered with the loop for writing: paho asks to stop
        # watching it after every write, and the loop's remove_writer on a socket it does
        # not watch costs a failed selector lookup (a KeyError raised and caught).
        self._watching_write = False
        # Publishes and acks handed to paho since the last write (see `_write_now`).
        self._unwritten = 0
        self._closing = False
        self._refused = False  # the last CONNACK was a refusal (already logged)

    # -- public API --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def protocol(self) -> MqttProtocol:
        return self._settings.protocol

    async def wait_connected(self) -> None:
        """Until the link is up and the subscriptions known at connect time are
        acknowledged (bound it with `asyncio.timeout`)."""
        await self._link_up.wait()

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        """`listener(True)` after each connect (subscriptions sent, queue flushed),
        `listener(False)` when the link is lost. Runs on the loop; must not block."""
        self._listeners.append(listener)

    def add_subscription(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again whenever the session was lost."""
        self._subscriptions[topic_filter] = qos
        if self._ready:
            self._paho.subscribe([(topic_filter, qos)])
            self._subscribed.add(topic_filter)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        content_type: str | None = None,
    ) -> asyncio.Future[None]:
        """Publish, or queue while disconnected; the future completes on the broker's ack.

        `correlation_data` and `content_type` are MQTT 5 properties, ignored on 3.1.1.
        Raises ValueError at once for a topic that is not a valid topic name.
        """
        problem = topic_problem(topic)
        if problem is not None:
            raise ValueError(f"cannot publish to {topic!r}: topic {problem}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_consume_result)
        message = _Outgoing(
            topic,
            payload,
            qos,
            retain,
            self._publish_properties(correlation_data, content_type),
            done,
        )
        if self._closing and not self._ready:
            done.set_exception(ClientClosed(f"client closed; not published to {topic}"))
        elif self._ready:
            self._hand_to_paho(message)
        else:
            self._enqueue(message)
        return done

    async def messages(self) -> AsyncIterator[IncomingMessage]:
        """Every PUBLISH received, in order, until the client is closed. One consumer."""
        while True:
            message = await self._inbox.get()
            if message is None:
                return
            yield message

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> MqttClient:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        settings = self._settings
        clean_start: Any = (
            False if settings.protocol is MqttProtocol.V5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        )
        self._paho.connect_async(
            settings.host,
            settings.port,
            keepalive=settings.keepalive,
            clean_start=clean_start,
            properties=self._connect_properties(),
        )
        self._tasks = [
            asyncio.create_task(self._supervise(), name="mqtt-supervisor"),
            asyncio.create_task(self._misc_loop(), name="mqtt-misc"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._attempt is not None and not self._attempt.done():
            # The blocking connect is still running in its thread: let it finish (bounded
            # by connect_timeout) before touching the paho client again.
            await asyncio.wait([self._attempt])
        if self._ready:
            await self._say_goodbye()
        self._drop_socket()
        self._fail_everything()
        self._inbox.put_nowait(None)

    async def _say_goodbye(self) -> None:
        timeout = self._settings.close_timeout
        offline = self.publish(self._status_topic, OFFLINE, qos=1, retain=True)
        with contextlib.suppress(TimeoutError, MqttClientError):
            async with asyncio.timeout(timeout):
                await offline
        self._link_down.clear()
        self._paho.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._link_down.wait()
        log.info("disconnected from MQTT broker %s:%d", self._settings.host, self._settings.port)

    def _fail_everything(self) -> None:
        futures = [message.done for message in self._queue] + list(self._pending.values())
        self._queue.clear()
        self._pending.clear()
        for future in futures:
            if not future.done():
                future.set_exception(ClientClosed("client closed before the broker acknowledged"))

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("MQTT background task %s failed", task.get_name(), exc_info=task.exception())

    # -- paho client construction ------------------------------------------------

    def _make_paho(self) -> paho.Client:
        settings = self._settings
        mqtt5 = settings.protocol is MqttProtocol.V5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=None if mqtt5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
            # False: never silently downgrade to MQTT 3.1 on a refused CONNECT.
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.connect_timeout = settings.connect_timeout
        if settings.username:
            client.username_pw_set(settings.username, settings.password or None)
        if settings.tls is not None:
            client.tls_set_context(self._tls_context())
        client.will_set(self._status_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self._settings.tls
        assert tls is not None
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
        return context

    def _connect_properties(self) -> Properties | None:
        if self._settings.protocol is not MqttProtocol.V5:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._settings.session_expiry
        if self._settings.receive_maximum:
            properties.ReceiveMaximum = self._settings.receive_maximum
        return properties

    def _publish_properties(
        self, correlation_data: bytes | None, content_type: str | None
    ) -> Properties | None:
        if self._settings.protocol is not MqttProtocol.V5 or not (correlation_data or content_type):
            return None
        return PublishProperties(correlation_data, content_type)

    # -- connection supervision --------------------------------------------------

    async def _supervise(self) -> None:
        settings = self._settings
        loop = asyncio.get_running_loop()
        delay = settings.reconnect_initial
        while True:
            self._link_down.clear()
            self._refused = False
            log.info("connecting to MQTT broker %s:%d", settings.host, settings.port)
            self._attempt = loop.run_in_executor(None, self._paho.reconnect)
            try:
                await asyncio.shield(self._attempt)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                log.warning(
                    "cannot connect to MQTT broker %s:%d: %s", settings.host, settings.port, exc
                )
            else:
                if await self._wait_connack():
                    delay = settings.reconnect_initial
                    await self._link_down.wait()
            wait = random.uniform(delay / 2, delay)
            log.info("reconnecting to MQTT broker in %.1f s", wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, settings.reconnect_max)

    async def _wait_connack(self) -> bool:
        """True once the link is up; False if it went down or CONNACK never came."""
        up = asyncio.ensure_future(self._link_up.wait())
        down = asyncio.ensure_future(self._link_down.wait())
        try:
            await asyncio.wait(
                [up, down], timeout=self._settings.connect_timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            up.cancel()
            down.cancel()
        if self._ready:
            return True
        if self._link_down.is_set():
            if not self._refused:  # a refusal was logged with its reason already
                log.warning(
                    "MQTT broker %s:%d closed the connection before accepting it "
                    "(TLS client certificate not accepted?)",
                    self._settings.host,
                    self._settings.port,
                )
            return False
        log.warning(
            "MQTT broker %s:%d sent no CONNACK within %.1f s",
            self._settings.host,
            self._settings.port,
            self._settings.connect_timeout,
        )
        self._drop_socket()
        return False

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL)
            if self._paho.socket() is not None and (self._attempt is None or self._attempt.done()):
                self._paho.loop_misc()

    def _drop_socket(self) -> None:
        """Close the socket through paho so its state and our callbacks stay consistent:
        shut it down, then let paho read the EOF (its own close path)."""
        sock = self._paho.socket()
        if sock is None:
            return
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # type: ignore[arg-type]
        try:
            self._paho.loop_read()
        except Exception:  # a failed close must not stop the shutdown
            log.exception("error while closing the MQTT socket")

    # -- paho callbacks (loop thread, except socket ones during reconnect) ---------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._refused = True
            log.error(
                "MQTT broker %s:%d refused the connection: %s",
                self._settings.host,
                self._settings.port,
                reason_code,
            )
            return
        self._generation += 1
        self._connected = True
        self.stats.connects += 1
        log.info(
            "connected to MQTT broker %s:%d (session present: %s)",
            self._settings.host,
            self._settings.port,
            flags.session_present,
        )
        # Leave paho's callback first: paho resends its own unacknowledged messages right
        # after on_connect returns, and those are older than anything in our queue.
        assert self._loop is not None
        self._loop.call_soon(self._after_connect, self._generation, flags.session_present)

    def _after_connect(self, generation: int, session_present: bool) -> None:
        if generation != self._generation or not self._connected:
            return
        self._awaiting_suback = None
        # A present session keeps what this process already subscribed; anything else
        # (first connect, filters added since, session lost) is subscribed now.
        missing = [
            (topic_filter, qos)
            for topic_filter, qos in self._subscriptions.items()
            if not session_present or topic_filter not in self._subscribed
        ]
        if missing:
            _, self._awaiting_suback = self._paho.subscribe(missing)
            self._subscribed.update(topic_filter for topic_filter, _ in missing)
        self._hand_to_paho(self._outgoing(self._status_topic, ONLINE, retain=True))
        while self._queue:
            self._hand_to_paho(self._queue.popleft())
        self._ready = True
        if self._awaiting_suback is None:
            self._link_up.set()
        self._notify(True)

    def _outgoing(self, topic: str, payload: bytes, *, retain: bool) -> _Outgoing:
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        done.add_done_callback(_consume_result)
        return _Outgoing(topic, payload, 1, retain, None, done)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_ready = self._ready
        self._connected = False
        self._ready = False
        self._link_up.clear()
        self._link_down.set()
        if was_ready:
            self.stats.connection_losses += 1
            if not self._closing:
                log.warning("lost the MQTT broker connection: %s", reason_code)
            self._notify(False)

    def _notify(self, up: bool) -> None:
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:
                log.exception("MQTT connection listener failed")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.stats.received += 1
        properties = message.properties
        response_topic = getattr(properties, "ResponseTopic", None) if properties else None
        correlation = getattr(properties, "CorrelationData", None) if properties else None
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("dropped a message with a non-UTF-8 topic (mid %d)", message.mid)
            self._ack(self._generation, message.mid, message.qos)
            return
        self._inbox.put_nowait(
            IncomingMessage(
                topic=topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                retain=bool(message.retain),
                dup=bool(message.dup),
                response_topic=response_topic,
                correlation_data=bytes(correlation) if correlation else None,
                _ack=partial(self._ack, self._generation, message.mid, message.qos),
            )
        )

    def _ack(self, generation: int, mid: int, qos: int) -> bool:
        if qos == 0:
            return True
        if generation != self._generation or not self._connected:
            log.debug("not acking mid %d: its connection is gone, the broker redelivers", mid)
            return False
        self._unwritten += 1
        return bool(self._paho.ack(mid, qos) == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        done = self._pending.pop(mid, None)
        if done is None or done.done():
            return
        if reason_code.is_failure:
            done.set_exception(PublishRejected(f"broker rejected publish mid {mid}: {reason_code}"))
        else:
            done.set_result(None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid == self._awaiting_suback and self._ready:
            self._awaiting_suback = None
            self._link_up.set()
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error(
                "MQTT broker refused subscription(s) %s: %s", list(self._subscriptions), refused
            )
        else:
            log.info("subscribed to %s", list(self._subscriptions))

    def _hand_to_paho(self, message: _Outgoing) -> None:
        self._unwritten += 1
        info = self._paho.publish(
            message.topic, message.payload, message.qos, message.retain, message.properties
        )
        if message.qos == 0:
            message.done.set_result(None)
        else:
            self._pending[info.mid] = message.done

    def _enqueue(self, message: _Outgoing) -> None:
        self._queue.append(message)
        if len(self._queue) > self._settings.max_queued:
            dropped = self._queue.popleft()
            self.stats.dropped_queued += 1
            log.warning(
                "outgoing queue full (%d) while disconnected: dropped the oldest message to %s "
                "(%d dropped so far)",
                self._settings.max_queued,
                dropped.topic,
                self.stats.dropped_queued,
            )
            if not dropped.done.done():
                dropped.done.set_exception(
                    PublishDropped(f"dropped from the full queue: {dropped.topic}")
                )

    # -- socket plumbing ---------------------------------------------------------

    def _on_loop(self, function: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_read, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_write, sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch_write, sock)

    def _watch_read(self, sock: Any) -> None:
        assert self._loop is not None
        current = self._paho.socket()
        if current is not None and sock is current:
            _no_delay(current)
            self._loop.add_reader(current, self._readable)

    def _watch_write(self, sock: Any) -> None:
        assert self._loop is not None
        current = self._paho.socket()
        if current is None or sock is not current:
            return
        if self._attempt is not None and not self._attempt.done():
            # reconnect() is still running in its thread: wait for the socket instead.
            self._add_writer(current)
        elif not self._write_scheduled:
            # The socket almost always has room: write at the end of this loop turn
            # (with everything else queued in it) instead of registering the socket with
            # the selector and unregistering it again, two system calls per packet.
            self._write_scheduled = True
            self._loop.call_soon(self._write_now, current)

    def _write_now(self, sock: Any) -> None:
        self._write_scheduled = False
        if self._paho.socket() is not sock:
            return
        # paho sends each packet with its own send(); corked, the answers and acks of
        # one loop turn leave in as few TCP segments as fit, instead of one each. A lone
        # packet (about one turn in five at full load) is one segment anyway: corking it
        # would only cost two system calls.
        corked = self._unwritten > 1 and _cork(sock, True)
        self._unwritten = 0
        self._writable()
        if corked:
            _cork(sock, False)
        current = self._paho.socket()
        if current is not None and current is sock and self._paho.want_write():
            self._add_writer(current)

    def _add_writer(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)
        self._watching_write = True

    def _unwatch_write(self, sock: Any) -> None:
        assert self._loop is not None
        if self._watching_write:
            self._watching_write = False
            self._loop.remove_writer(sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._watching_write = False

    def _readable(self) -> None:
        try:
            self._paho.loop_read()
            # TLS: decrypted bytes can wait in the SSL object while the fd is not readable.
            sock = self._paho.socket()
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                self._paho.loop_read()
                sock = self._paho.socket()
        except Exception:
            log.exception("error while reading from the MQTT broker; dropping the connection")
            self._drop_socket()

    def _writable(self) -> None:
        try:
            self._paho.loop_write()
        except Exception:
            log.exception("error while writing to the MQTT broker; dropping the connection")
            self._drop_socket()


def _no_delay(sock: Any) -> None:
    """Send each answer at once: with Nagle's algorithm a PUBLISH written while an
    earlier one is unacknowledged waits for the broker's delayed ACK (up to ~40 ms)."""
    raw = sock if isinstance(sock, socket.socket) else None
    if raw is None or raw.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _cork(sock: Any, on: bool) -> bool:
    """Set TCP_CORK (Linux) on a TCP socket; False where there is none."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or not isinstance(sock, socket.socket):
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
    except OSError:
        return False
    return True
