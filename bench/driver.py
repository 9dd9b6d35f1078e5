"""The MQTT side of the bench: a paho client that keeps N requests in flight.

Requests go out QoS 1 with the MQTT 5 Response Topic and Correlation Data properties;
the answer's correlation data names the request, so no answer is parsed twice. The
closed loop publishes the next request from inside paho's network thread the moment an
answer arrives, so the driver adds no scheduling delay of its own. Latency is measured
from just before the PUBLISH to the answer's arrival (`time.perf_counter`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.stack import BASE_TOPIC, StackError

# (index in the run, request id) -> the request object without its id
RequestFactory = Callable[[int, str], dict[str, Any]]
SESSION_EXPIRY = 3600


class DriverError(StackError):
    """The driver could not reach the broker or the daemon."""


@dataclass(frozen=True)
class Answer:
    request_id: str
    latency: float  # seconds from publish to answer
    ok: bool
    kind: str  # "ok", "coap <code>" for a CoAP error code, or the error object's kind
    received_at: float  # time.perf_counter() at the answer


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class RunResult:
    sent: int
    answers: list[Answer]
    elapsed: float
    duplicate_answers: int
    unanswered: list[str]
    # (request id, kind) of every answer after a request's first, in arrival order.
    repeats: list[tuple[str, str]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.answers)

    @property
    def throughput(self) -> float:
        return self.answered / self.elapsed if self.elapsed > 0 else 0.0

    def sustained_throughput(self, window: int) -> float:
        """Answers per second while the pipeline is full: from the `window`-th answer to
        the `window`-th from last, leaving out the first round trip (the window filling
        while nothing has come back yet) and the last (it draining)."""
        times = sorted(answer.received_at for answer in self.answers)
        if len(times) < 2 * window + 2:
            return self.throughput
        first, last = times[window], times[-1 - window]
        return (len(times) - 2 * window - 1) / (last - first) if last > first else 0.0

    @property
    def ok(self) -> int:
        return sum(1 for answer in self.answers if answer.ok)

    def kinds(self) -> Counter[str]:
        return Counter(answer.kind for answer in self.answers if not answer.ok)

    def latency_ms(self, fraction: float) -> float:
        return 1000 * percentile([answer.latency for answer in self.answers], fraction)

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "ok": self.ok,
            "errors": dict(self.kinds()),
            "duplicate_answers": self.duplicate_answers,
            "unanswered": len(self.unanswered),
            "elapsed_s": round(self.elapsed, 3),
            "req_per_s": round(self.throughput, 1),
            "p50_ms": round(self.latency_ms(0.5), 2),
            "p99_ms": round(self.latency_ms(0.99), 2),
        }


def classify(payload: bytes | bytearray) -> tuple[str, bool, str]:
    """(request id, ok, kind) of an answer object."""
    try:
        answer = json.loads(payload)
    except ValueError:
        return "", False, "unparseable answer"
    request_id = str(answer.get("id"))
    if answer.get("ok"):
        return request_id, True, "ok"
    error = answer.get("error")
    if isinstance(error, dict):
        return request_id, False, str(error.get("kind"))
    return request_id, False, f"coap {answer.get('code')}"


@dataclass
class _Pending:
    sent_at: float
    overdue: bool = False


@dataclass
class ClosedLoop:
    """`count` requests with at most `in_flight` unanswered at any time.

    With `overdue_after`, a request unanswered for that long stops holding a window slot
    (it is still waited for, and counted as lost if it never gets an answer), so a
    fault that swallows answers cannot stall the whole run.
    """

    driver: MqttDriver
    count: int
    in_flight: int
    make_request: RequestFactory
    overdue_after: float | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False)
    _pending: dict[str, _Pending] = field(default_factory=dict, init=False)
    _answers: list[Answer] = field(default_factory=list, init=False)
    _answered_ids: set[str] = field(default_factory=set, init=False)
    _repeats: list[tuple[str, str]] = field(default_factory=list, init=False)
    _next: int = field(default=0, init=False)
    _window: int = field(default=0, init=False)
    _started_at: float = field(default=0.0, init=False)
    _last_answer_at: float = field(default=0.0, init=False)

    def request_id(self, index: int) -> str:
        return f"{self.tag}-{index}"

    @property
    def sent(self) -> int:
        return self._next

    @property
    def answered(self) -> int:
        return len(self._answers)

    def start(self) -> None:
        self._started_at = time.perf_counter()
        self.driver.attach(self)
        self._refill()

    def _refill(self) -> None:
        """Fill the window; the publishes happen outside the lock (paho has its own)."""
        batch: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            while self._window < self.in_flight and self._next < self.count:
                request_id = self.request_id(self._next)
                request = self.make_request(self._next, request_id)
                request["id"] = request_id
                self._pending[request_id] = _Pending(time.perf_counter())
                self._next += 1
                self._window += 1
                batch.append((request_id, request))
        for request_id, request in batch:
            self.driver.publish_request(request_id, request)

    def on_answer(self, request_id: str, ok: bool, kind: str, received_at: float) -> None:
        with self._lock:
            pending = self._pending.pop(request_id, None)
            if pending is None:
                if request_id in self._answered_ids:
                    self._repeats.append((request_id, kind))
                return
            self._answered_ids.add(request_id)
            self._answers.append(
                Answer(request_id, received_at - pending.sent_at, ok, kind, received_at)
            )
            self._last_answer_at = received_at
            if not pending.overdue:
                self._window -= 1
            if len(self._answers) == self.count:
                self._done.set()
        self._refill()

    def _release_overdue(self) -> None:
        if self.overdue_after is None:
            return
        limit = time.perf_counter() - self.overdue_after
        with self._lock:
            for pending in self._pending.values():
                if not pending.overdue and pending.sent_at < limit:
                    pending.overdue = True
                    self._window -= 1
        self._refill()

    def wait(self, timeout: float) -> bool:
        """Wait until every request is answered or `timeout` passes; True if all were."""
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._done.wait(min(remaining, 0.5))
            self._release_overdue()
        return True

    def result(self) -> RunResult:
        with self._lock:
            self.driver.detach(self)
            end = self._last_answer_at or time.perf_counter()
            return RunResult(
                sent=self._next,
                answers=list(self._answers),
                elapsed=end - self._started_at,
                duplicate_answers=len(self._repeats),
                unanswered=sorted(self._pending),
                repeats=list(self._repeats),
            )

    def run(self, timeout: float) -> RunResult:
        self.start()
        self.wait(timeout)
        return self.result()


class MqttDriver:
    """One MQTT 5 client session (persistent, so a broker restart loses nothing)."""

    def __init__(
        self, mqtt_port: int, *, base_topic: str = BASE_TOPIC, name: str = "bench"
    ) -> None:
        self.base_topic = base_topic
        session = uuid.uuid4().hex[:8]
        self.reply_topic = f"{base_topic}/response/{name}-{session}"
        self.status_topic = f"{base_topic}/status"
        self._port = mqtt_port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{name}-{session}", protocol=mqtt.MQTTv5
        )
        # Our own QoS 1 window must never be the limit; paho's default is 20.
        self._client.max_inflight_messages_set(0)
        self._client.reconnect_delay_set(0, 1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._loops: dict[str, ClosedLoop] = {}
        self._status: dict[str, Any] = {}
        self._status_changed = threading.Condition()
        self._subscribed = threading.Event()
        self.stray_answers = 0
        self.connects = 0

    def __enter__(self) -> MqttDriver:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.ReceiveMaximum = 65535
        try:
            self._client.connect(
                "127.0.0.1", self._port, keepalive=30, clean_start=False, properties=properties
            )
        except OSError as exc:
            raise DriverError(f"cannot connect to the broker on port {self._port}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.__exit__(None, None, None)
            raise DriverError("the broker did not acknowledge the driver's subscriptions")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: Any,
        properties: Any,
    ) -> None:
        self.connects += 1
        # paho leaves Nagle on; with it, small PUBLISHes wait up to 40 ms for an ACK.
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A resumed session keeps its subscriptions (and the answers queued meanwhile).
        if not reason.is_failure and not flags.session_present:
            client.subscribe([(self.reply_topic, 1), (self.status_topic, 1)])

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received_at = time.perf_counter()
        if message.topic == self.status_topic:
            with self._status_changed:
                self._status = json.loads(message.payload) if message.payload else {}
                self._status_changed.notify_all()
            return
        request_id, ok, kind = classify(message.payload)
        correlation = getattr(message.properties, "CorrelationData", None)
        if correlation:
            request_id = correlation.decode(errors="replace")
        loop = self._loops.get(request_id.rsplit("-", 1)[0])
        if loop is None:
            self.stray_answers += 1
            return
        loop.on_answer(request_id, ok, kind, received_at)

    def attach(self, loop: ClosedLoop) -> None:
        self._loops[loop.tag] = loop

    def detach(self, loop: ClosedLoop) -> None:
        self._loops.pop(loop.tag, None)

    def publish_request(self, request_id: str, request: dict[str, Any]) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = self.reply_topic
        properties.CorrelationData = request_id.encode()
        self._client.publish(
            f"{self.base_topic}/request", json.dumps(request), qos=1, properties=properties
        )

    def clear_status(self) -> None:
        """Drop the retained status of an earlier daemon, so `wait_online` sees a new one."""
        self._client.publish(self.status_topic, b"", qos=1, retain=True).wait_for_publish(5)

    def wait_online(self, timeout: float, still_running: Callable[[], None]) -> None:
        """Wait for the daemon's retained `{"state": "online"}`; `still_running` raises if not."""
        deadline = time.monotonic() + timeout
        with self._status_changed:
            while self._status.get("state") != "online":
                still_running()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DriverError(f"the daemon did not report online within {timeout:g} s")
                self._status_changed.wait(min(remaining, 0.5))

    def closed_loop(
        self,
        count: int,
        in_flight: int,
        make_request: RequestFactory,
        *,
        overdue_after: float | None = None,
    ) -> ClosedLoop:
        return ClosedLoop(self, count, in_flight, make_request, overdue_after)
