"""`MqttClient`: the broker session of the bridge, paho-mqtt 2.2 on the asyncio loop.

Contract: a persistent session (3.1.1 `clean_session=False`, 5 `clean_start=False` with
`SessionExpiryInterval`); subscriptions sent on the first connect of the process and on
every connect without a session present; manual acks (`IncomingMessage.ack()` acks only
on the connection the message came on); the retained `<base>/status` online on every
connect, offline as the Last Will and on a clean close; reconnects forever. With
several broker nodes (`brokers`, from `mqtt.hosts`) a lost or refused connection moves
on to the next node at once, and `bridge.backoff.Backoff` waits only once every node
failed in a row (`bridge.mqtt.brokers`); `broker` names the node in use. The pool
connection (`clean_start`, `announce_status=False`) has a session that ends with it
and no status of its own. Publishing is `bridge.mqtt.outbox`, the socket
`bridge.mqtt.plumbing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.backoff import Backoff
from bridge.mqtt.brokers import BrokerRotation
from bridge.mqtt.incoming import IncomingMessage
from bridge.mqtt.outbox import MqttClientError, Outbox, PublishProperties
from bridge.mqtt.paho_client import connect_async, new_paho_client
from bridge.mqtt.plumbing import SocketPlumbing
from bridge.mqtt.settings import MqttClientSettings, MqttProtocol
from bridge.mqtt.stats import MqttStats
from bridge.mqtt.subscriptions import Subscriptions
from bridge.mqtt.takeover import TakeoverWatch
from bridge.mqtt.topics import status_topic, topic_problem

log = logging.getLogger(__name__)

ONLINE = json.dumps({"state": "online"}).encode()
OFFLINE = json.dumps({"state": "offline"}).encode()


class MqttClient:
    """`async with MqttClient(settings) as client:` — connects in the background.

    Entering does not wait for the broker (it may be down; the client keeps trying);
    use `await client.wait_connected()` where a live link is needed. Enter the front
    right after the client so its subscriptions are known before the first connect.
    """

    def __init__(self, settings: MqttClientSettings) -> None:
        self._settings = settings
        self._mqtt5 = settings.protocol is MqttProtocol.V5
        self._status_topic = status_topic(settings.base_topic)
        self._stats = MqttStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paho = new_paho_client(settings, self._status_topic, OFFLINE)
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_publish = self._on_publish
        self._paho.on_subscribe = self._on_subscribe
        self._io = SocketPlumbing(self._paho)
        self._outbox = Outbox(self._paho, self._io, settings.max_queued, self._stats)
        self._subscriptions = Subscriptions(
            Backoff(settings.reconnect_initial, settings.reconnect_max)
        )
        self._generation = 0  # bumped on every CONNACK; stale acks are dropped
        self._connected = False  # CONNACK received on the current socket
        self._link_up = asyncio.Event()
        self._link_down = asyncio.Event()
        self._inbox: asyncio.Queue[IncomingMessage | None] = asyncio.Queue()
        self._listeners: list[Callable[[bool], None]] = []
        self._tasks = asyncio.TaskGroup()  # the supervisor and paho's timers
        self._background: list[asyncio.Task[None]] = []
        self._refused = False  # the last CONNACK was a refusal (already logged)
        self._brokers = BrokerRotation(
            settings.addresses, Backoff(settings.reconnect_initial, settings.reconnect_max)
        )
        self._takeover = TakeoverWatch(settings.client_id)
        self._retry_handle: asyncio.TimerHandle | None = None

    # -- public API --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The link is up and the queue flushed: a publish goes straight to paho."""
        return self._outbox.ready

    @property
    def stats(self) -> MqttStats:
        """The MQTT layer's counters; the front counts its requests here too."""
        return self._stats

    @stats.setter
    def stats(self, stats: MqttStats) -> None:
        # The service keeps one table across restarts of the layers.
        self._stats = stats
        self._outbox.stats = stats

    @property
    def queued(self) -> int:
        return len(self._outbox)

    @property
    def protocol(self) -> MqttProtocol:
        return self._settings.protocol

    @property
    def settings(self) -> MqttClientSettings:
        return self._settings

    @property
    def broker(self) -> str:
        """The broker node in use (or being tried), `host:port`."""
        return str(self._brokers.current)

    async def wait_connected(self) -> None:
        """Until the link is up and the subscriptions known at connect time are
        acknowledged (bound it with `asyncio.timeout`)."""
        await self._link_up.wait()

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        """`listener(True)` after each connect (subscriptions sent, queue flushed),
        `listener(False)` when the link is lost. Runs on the loop; must not block."""
        self._listeners.append(listener)

    def set_password(self, password: str) -> None:
        """Use `password` from the next CONNECT on (the current connection stays)."""
        self._settings = dataclasses.replace(self._settings, password=password)
        if self._settings.username:
            self._paho.username_pw_set(self._settings.username, password or None)

    @property
    def subscription_error(self) -> str | None:
        """Why the broker refused a subscription (the client is not ready), or None."""
        return self._subscriptions.error

    def add_subscription_listener(self, listener: Callable[[str | None], None]) -> None:
        """`listener(why)` when the broker refuses a subscription, `listener(None)` once
        it is granted after that. Runs on the loop; must not block."""
        self._subscriptions.add_listener(listener)

    def add_subscription(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again whenever the session was lost."""
        filters = self._subscriptions.want(topic_filter, qos)
        if self._outbox.ready:
            self._send_subscribe(filters)

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
        properties = (
            PublishProperties(correlation_data, content_type)
            if self._mqtt5 and (correlation_data or content_type)
            else None
        )
        return self._outbox.publish(topic, payload, qos, retain, properties)

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
        self._io.attach(self._loop)
        await self._tasks.__aenter__()
        self._background = [
            self._tasks.create_task(self._supervise(), name="mqtt-supervisor"),
            self._tasks.create_task(self._io.run_misc(), name="mqtt-misc"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._outbox.closing = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        for task in self._background:
            task.cancel()
        try:
            # Not the body's exception: it must propagate as it is, not in a group.
            await self._tasks.__aexit__(None, None, None)
        finally:
            # The blocking connect may still run in its thread: let it finish (bounded
            # by connect_timeout) before touching the paho client again.
            await self._io.settle()
            if self._outbox.ready:
                await self._say_goodbye()
            self._io.drop()
            self._outbox.fail_all()
            self._inbox.put_nowait(None)

    async def _say_goodbye(self) -> None:
        timeout = self._settings.close_timeout
        if self._settings.announce_status:
            offline = self.publish(self._status_topic, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(TimeoutError, MqttClientError):
                async with asyncio.timeout(timeout):
                    await offline
        self._link_down.clear()
        self._paho.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._link_down.wait()
        log.info("disconnected from MQTT broker %s", self.broker)

    # -- connection supervision --------------------------------------------------

    async def _supervise(self) -> None:
        brokers = self._brokers
        while True:
            self._link_down.clear()
            self._refused = False
            address = brokers.current
            connect_async(self._paho, self._settings, address)
            log.info("connecting to MQTT broker %s", address)
            try:
                await asyncio.shield(self._io.connect())
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                log.warning("cannot connect to MQTT broker %s: %s", address, exc)
            else:
                if await self._wait_connack():
                    connected_at = time.monotonic()
                    await self._link_down.wait()
                    if self._takeover.link_lost(time.monotonic() - connected_at, self.broker):
                        brokers.link_held()
            wait = brokers.failed()
            if wait:
                log.info("reconnecting to MQTT broker %s in %.1f s", brokers.current, wait)
                await asyncio.sleep(wait)

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
        if self._outbox.ready:
            return True
        if self._link_down.is_set():
            if not self._refused:  # a refusal was logged with its reason already
                log.warning(
                    "MQTT broker %s closed the connection before accepting it "
                    "(TLS client certificate not accepted?)",
                    self.broker,
                )
            return False
        log.warning(
            "MQTT broker %s sent no CONNACK within %.1f s",
            self.broker,
            self._settings.connect_timeout,
        )
        self._io.drop()
        return False

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
            log.error("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            return
        self._generation += 1
        self._connected = True
        self._stats.connects += 1
        log.info(
            "connected to MQTT broker %s as %s (session present: %s)",
            self.broker,
            self._settings.client_id,
            flags.session_present,
        )
        # Leave paho's callback first: paho resends its own unacknowledged messages right
        # after on_connect returns, and those are older than anything in our queue.
        assert self._loop is not None
        self._loop.call_soon(self._after_connect, self._generation, flags.session_present)

    def _after_connect(self, generation: int, session_present: bool) -> None:
        if generation != self._generation or not self._connected:
            return
        missing = self._subscriptions.on_connect(session_present)
        if missing:
            self._send_subscribe(missing)
        elif self._settings.announce_status:
            # Online only once every request filter is granted (else _on_subscribe).
            self._outbox.send_now(self._status_topic, ONLINE, retain=True)
        self._outbox.flush()
        self._outbox.ready = True
        if self._subscriptions.awaiting is None:
            self._link_up.set()
        self._notify(True)

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> None:
        _, mid = self._paho.subscribe(filters)
        assert mid is not None
        self._subscriptions.sent(mid, filters)

    def _retry_subscriptions(self, generation: int) -> None:
        self._retry_handle = None
        if generation != self._generation or not self._outbox.ready:
            return  # the next connect subscribes what is missing anyway
        missing = self._subscriptions.missing()
        if missing:
            log.info("subscribing again to %s", [f for f, _ in missing])
            self._send_subscribe(missing)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_ready = self._outbox.ready
        self._connected = False
        self._outbox.ready = False
        self._link_up.clear()
        self._link_down.set()
        self._takeover.disconnected(reason_code.value, self.broker, closing=self._outbox.closing)
        if was_ready:
            self._stats.connection_losses += 1
            if not self._outbox.closing and not self._takeover.taken_over:
                log.warning("lost the connection to MQTT broker %s: %s", self.broker, reason_code)
            self._notify(False)

    def _notify(self, up: bool) -> None:
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:
                log.exception("MQTT connection listener failed")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._stats.received += 1
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
        self._io.unwritten += 1
        return bool(self._paho.ack(mid, qos) == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._outbox.acked(mid, reason_code)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        outcome = self._subscriptions.acknowledged(mid, reason_codes, self._outbox.ready)
        if outcome.retry_in is not None:
            # Not serving while refused; the retry (or the next connect) subscribes again.
            if self._outbox.ready:
                if self._settings.announce_status:
                    self._outbox.send_now(self._status_topic, OFFLINE, retain=True)
                assert self._loop is not None
                self._retry_handle = self._loop.call_later(
                    outcome.retry_in, self._retry_subscriptions, self._generation
                )
        elif outcome.completes_connect:
            if self._settings.announce_status:
                self._outbox.send_now(self._status_topic, ONLINE, retain=True)
            self._link_up.set()
