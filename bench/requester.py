"""The fleet benchmark's client: open-loop requests, republished while unanswered.

`Requester(address, mqtt5=...)` publishes request `index` to `target(index)`, a
`Target(request_topic, reply_topic)`: with MQTT 5 the reply topic goes in the Response
Topic property (Correlation Data = the id), with 3.1.1 in the body's `response_topic`.
`republish_due()` republishes (same id) every request unanswered for `retry_after`
seconds, at most `retries` times. Every answer is recorded with its arrival time and
the `gateway` that served it, duplicates included. Retained `coap-bridge/+/status`
messages are followed, so `wait_online(names)` can wait for the gateways, and so are
the retained health objects (`health[name]`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.stack import StackError

SUBSCRIBE_TIMEOUT = 10.0
HEALTH_FILTER = "coap-bridge/+/health"


@dataclass(frozen=True)
class Target:
    request_topic: str
    reply_topic: str


@dataclass
class Sent:
    index: int
    body: dict[str, Any]
    target: Target
    first_sent: float
    last_sent: float
    publishes: int = 1
    answers: list[tuple[float, str]] = field(default_factory=list)  # (arrival, gateway)
    payloads: set[bytes] = field(default_factory=set)  # distinct answer bodies

    @property
    def repeats_differ(self) -> bool:
        """More than one distinct answer: served twice, not answered again from a cache."""
        return len(self.payloads) > 1


class Requester:
    def __init__(
        self,
        address: str,
        *,
        mqtt5: bool,
        reply_filter: str,
        retries: int = 0,
        retry_after: float = 5.0,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.tag = uuid.uuid4().hex[:8]
        self._mqtt5 = mqtt5
        self._retries = retries
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self.sent: dict[str, Sent] = {}
        self.online: set[str] = set()
        self.health: dict[str, dict[str, Any]] = {}
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleet-requester-{self.tag}",
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect(host, int(port), keepalive=30)
        self._client.loop_start()
        self._client.subscribe([(reply_filter, 1), ("coap-bridge/+/status", 1), (HEALTH_FILTER, 1)])
        if not self._subscribed.wait(SUBSCRIBE_TIMEOUT):
            raise StackError(f"the requester got no SUBACK from the broker at {address}")

    def reread_health(self) -> None:
        """Subscribe to the health topics again, for each gateway's retained health: the
        broker's stored copy, current even when a live one went missing between the
        cluster's nodes."""
        self._client.unsubscribe(HEALTH_FILTER)
        self._client.subscribe(HEALTH_FILTER, 1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_online(self, names: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if names <= self.online:
                    return
            time.sleep(0.1)
        missing = sorted(names - self.online)
        raise StackError(f"gateways not online after {timeout:g} s: {missing}")

    def send(self, index: int, body: dict[str, Any], target: Target) -> str:
        request_id = f"{self.tag}-{index}"
        body = {**body, "id": request_id}
        if not self._mqtt5:
            body["response_topic"] = target.reply_topic
        now = time.monotonic()
        with self._lock:
            self.sent[request_id] = Sent(index, body, target, now, now)
        self._publish(self.sent[request_id])
        return request_id

    def republish_due(self) -> int:
        now = time.monotonic()
        due = []
        with self._lock:
            for request in self.sent.values():
                if (
                    not request.answers
                    and request.publishes <= self._retries
                    and now - request.last_sent >= self._retry_after
                ):
                    request.publishes += 1
                    request.last_sent = now
                    due.append(request)
        for request in due:
            self._publish(request)
        return len(due)

    def unanswered(self) -> int:
        with self._lock:
            return sum(1 for request in self.sent.values() if not request.answers)

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return [
                Sent(
                    r.index,
                    r.body,
                    r.target,
                    r.first_sent,
                    r.last_sent,
                    r.publishes,
                    list(r.answers),
                    set(r.payloads),
                )
                for r in self.sent.values()
            ]

    def _publish(self, request: Sent) -> None:
        properties = None
        if self._mqtt5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = request.target.reply_topic
            properties.CorrelationData = str(request.body["id"]).encode()
        self._client.publish(
            request.target.request_topic, json.dumps(request.body), qos=1, properties=properties
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if message.topic.endswith("/status"):
            name = message.topic.split("/")[1]
            with self._lock:
                if body.get("state") == "online":
                    self.online.add(name)
                else:
                    self.online.discard(name)
            return
        if message.topic.endswith("/health"):
            with self._lock:
                self.health[message.topic.split("/")[1]] = body
            return
        with self._lock:
            request = self.sent.get(str(body.get("id")))
            if request is not None:
                request.answers.append((now, str(body.get("gateway", "?"))))
                request.payloads.add(bytes(message.payload))


def run_open_loop(
    requester: Requester,
    count: int,
    rate: float,
    request: Callable[[int], tuple[dict[str, Any], Target]],
    *,
    events: Sequence[tuple[float, Callable[[], None]]] = (),
    drain: float = 30.0,
) -> float:
    """Publish `count` requests at `rate`/s, running each event at its time (seconds
    from the start) and republishing as due; returns once all are answered or `drain`
    seconds after the last publish. Returns the start time (time.monotonic())."""
    pending = sorted(events, key=lambda event: event[0])
    start = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic() - start
        while pending and pending[0][0] <= now:
            pending.pop(0)[1]()
        while sent < count and sent <= now * rate:
            body, target = request(sent)
            requester.send(sent, body, target)
            sent += 1
        requester.republish_due()
        finished = not requester.unanswered() or now > count / rate + drain
        if sent == count and not pending and finished:
            return start
        time.sleep(0.01)


def served_by(sent: Sequence[Sent]) -> dict[str, int]:
    """How many requests each gateway answered first."""
    share: dict[str, int] = {}
    for request in sent:
        if request.answers:
            gateway = min(request.answers)[1]
            share[gateway] = share.get(gateway, 0) + 1
    return share


def duplicate_answers(sent: Sequence[Sent]) -> tuple[int, int]:
    """(answers beyond the first, requests answered with differing bodies: served twice)."""
    extra = sum(max(len(request.answers) - 1, 0) for request in sent)
    return extra, sum(1 for request in sent if request.repeats_differ)
