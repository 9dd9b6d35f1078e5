"""The request front: MQTT topics, acks, dedupe and concurrency around a `RequestHandler`.

The front knows nothing about CoAP or the JSON request shape. The service implements
`RequestHandler` with `bridge.mapping`:

- `parse(payload) -> Envelope` — quick, pure. Returns the request id, the body's
  `response_topic` (already checked to lie under `<base>/response/`), whether it is a
  cancel, and the parsed request (opaque to the front). A request that is invalid but
  whose id is known comes back as an Envelope with `rejection` set: the front answers
  `error(id, rejection)` on that id's topic. If `parse` raises, the request has no
  usable id and is answered on `<base>/response/invalid` with `error(None, exc)`.
- `serve(envelope)` — an async iterator of answer dicts: exactly one for a plain
  request, one per notification for an observation. Raising ends the request with
  `error(id, exc)`; being cancelled (cancel request, shutdown) ends it with
  `error(id, Cancelled(...))`. Close observations in a `finally`.
- `error(request_id, exc) -> dict` — the contract's error object.

A service on top of it::

    class CoapRequests:
        def parse(self, payload):
            try:
                request = parse_request(payload, settings)
            except (InvalidRequest, ForbiddenTarget) as exc:
                if exc.request_id is None:
                    raise
                return Envelope(exc.request_id, rejection=exc)
            return Envelope(request.id, request, request.response_topic,
                            observe=request.observe, cancel=request.cancel)

        async def serve(self, envelope):
            yield response_to_json(...)

        def error(self, request_id, exc):
            return error_to_json(request_id, exc)

    async with MqttClient(client_settings) as client, \\
            RequestFront(client, CoapRequests(), front_settings, health=health) as front:
        ...

Routing: MQTT 5 Response Topic (+ Correlation Data echoed), else the body's
`response_topic`, else `<base>/response/<id>`; no usable id: `<base>/response/invalid`
(`bridge.mqtt.topics.answer_topic`). Answers are JSON, QoS 1, not retained.

Acknowledgement: a request's PUBLISH is acked after the PUBACK for its first answer
(response or error) came back — end-to-end at-least-once. If that answer was dropped
from the client's full queue, or the link dropped first, the request is not acked;
the broker redelivers it and the answer comes from the dedupe cache. A broker that
rejects the answer (MQTT 5 reason >= 0x80, e.g. ACL) gets the request acked anyway:
redelivery would be rejected the same way. PUBACKs go out in completion order, not
arrival order (strictly ordered acks would make one slow request block all others).

Observations: the request is acked and its concurrency slot released after the first
answer, so a long stream holds neither a broker in-flight slot nor a `max_in_flight`
slot (observations are bounded by the CoAP layer). Later notifications are published
QoS 1 without waiting (they queue, bounded, while the link is down). A cancel message
(`{"id": ..., "cancel": true}`) cancels the request or stream with that id; its
`cancelled` error goes on the original request's topic, and the cancel message is acked
after it, with no answer of its own. A cancel for an id not in flight is answered with
an `invalid_request` error.

Dedupe: a request whose id is being served attaches to it (answered with the same
first answer, handler not called again); one answered within `dedupe_window` seconds is
answered from the cache. Cancels and rejections bypass dedupe.

Back-pressure: at most `max_in_flight` requests are served at once; the others wait,
unacked, in arrival order. Nothing is dropped and there is no count limit here: with
manual ack the broker stops sending once the client's Receive Maximum (MQTT 5,
`MqttClientSettings.receive_maximum`) or its own in-flight limit (mosquitto's
`max_inflight_messages`, also used for 3.1.1) is reached, so the broker bounds it.

Shutdown: intake stops; requests being served get `shutdown_grace` seconds, then are
answered `cancelled` (given `shutdown_flush` seconds to be acknowledged). Requests
still waiting for a slot are left unacked: the broker hands them to the next session.

Health: `<base>/health` (retained) every `health_interval` s, on each connect, and
shortly after `health_changed()`; the dict from the `health` callable gets the front's
`counters` merged in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from bridge.errors import BridgeError, Cancelled, InvalidRequest
from bridge.mqtt.client import IncomingMessage, MqttClient
from bridge.mqtt.dedupe import AnswerCache
from bridge.mqtt.outbox import MqttClientError, PublishRejected
from bridge.mqtt.settings import FrontSettings, MqttProtocol
from bridge.mqtt.topics import (
    answer_topic,
    health_topic,
    request_topic,
    shared_request_filter,
    topic_problem,
    unsolicited_topic,
)

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
Answer = Mapping[str, Any]
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Envelope(Generic[RequestT]):
    """What the front needs to know about one request message."""

    request_id: str | None
    request: RequestT | None = None
    response_topic: str | None = None
    observe: bool = False
    cancel: bool = False
    rejection: BaseException | None = None


class RequestHandler(Protocol[RequestT]):
    def parse(self, payload: bytes) -> Envelope[RequestT]: ...

    def serve(self, envelope: Envelope[RequestT]) -> AsyncIterator[Answer]: ...

    def error(self, request_id: str | None, exc: BaseException) -> Answer: ...


@dataclass(frozen=True)
class Routing:
    topic: str
    correlation_data: bytes | None


@dataclass(frozen=True, slots=True)
class _Delivered:
    """The first answer of a request, kept for duplicates and the dedupe cache.

    Kept as the JSON bytes that were published: the cache holds every answer of the
    dedupe window (thousands at full rate), and bytes are several times smaller than
    the dict they came from (and need no second encoding for a redelivery).
    """

    payload: bytes
    error_kind: str | None


@dataclass
class FrontCounters:
    requests: int = 0
    responses: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped_queued: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "dropped_queued": self.dropped_queued,
        }


@dataclass(eq=False)
class _InFlight:
    request_id: str
    first_answer: asyncio.Future[_Delivered]
    finished: asyncio.Future[None]
    observe: bool
    task: asyncio.Task[None] | None = None
    started: bool = False
    cancel_reason: str | None = None
    dependents: list[asyncio.Task[None]] = field(default_factory=list)


class RequestFront(Generic[RequestT]):
    def __init__(
        self,
        client: MqttClient,
        handler: RequestHandler[RequestT],
        settings: FrontSettings,
        *,
        health: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._client = client
        self._handler = handler
        self._settings = settings
        self._health = health
        self.counters = FrontCounters()
        self._base = settings.base_topic
        self._request_topics = {request_topic(settings.base_topic)}
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        # Responses are cached as their bare payload (most entries, no wrapper), errors
        # with their kind.
        self._cache: AnswerCache[_Delivered | bytes] = AnswerCache(
            settings.dedupe_window, settings.dedupe_max_entries
        )
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._health_kick = asyncio.Event()
        self._serving = 0

    # -- public API --------------------------------------------------------------

    @property
    def serving(self) -> int:
        """Requests holding a concurrency slot now."""
        return self._serving

    @property
    def waiting(self) -> int:
        """Requests received but not yet given a slot."""
        return sum(1 for record in self._in_flight.values() if not record.started)

    def publish_unsolicited(self, body: Answer) -> None:
        """`<base>/unsolicited`, QoS 1, queued (bounded) while the link is down."""
        self._client.publish(
            unsolicited_topic(self._base), json.dumps(body).encode(), content_type=JSON_CONTENT_TYPE
        )

    def health_changed(self) -> None:
        """Publish health soon (coalesced: at most one per `health_min_gap`)."""
        self._health_kick.set()

    def health_snapshot(self) -> dict[str, Any]:
        health = dict(self._health()) if self._health is not None else {}
        health.setdefault("state", "online")
        self.counters.dropped_queued = self._client.stats.dropped_queued
        counters = dict(health.get("counters", {}))
        counters.update(self.counters.as_dict())
        health["counters"] = counters
        return health

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> RequestFront[RequestT]:
        settings = self._settings
        if settings.shared_group:
            if self._client.protocol is MqttProtocol.V5:
                self._request_topics.add(f"{settings.pool_topic}/request")
                self._client.add_subscription(
                    shared_request_filter(settings.shared_group, settings.pool_topic)
                )
            else:
                log.warning(
                    "shared_group %r ignored: shared subscriptions need MQTT 5",
                    settings.shared_group,
                )
        self._client.add_subscription(request_topic(self._base))
        self._client.add_connection_listener(self._on_connection)
        self._background = [
            asyncio.create_task(self._consume(), name="mqtt-front-requests"),
            asyncio.create_task(self._health_loop(), name="mqtt-front-health"),
        ]
        for task in self._background:
            task.add_done_callback(self._task_ended)
        self._health_kick.set()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        consume, health_task = self._background
        consume.cancel()
        await asyncio.gather(consume, return_exceptions=True)
        grace = self._settings.shutdown_grace
        for record in list(self._in_flight.values()):
            if record.task is None or record.task.done():
                continue
            if not record.started:
                # Still waiting for a slot: it must not start now. Cancelled without an
                # answer and left unacknowledged, the broker redelivers it next session.
                record.task.cancel()
            elif record.observe:
                # A stream never finishes on its own: end it now rather than after the grace.
                record.cancel_reason = "the bridge is shutting down"
                record.task.cancel()
        started = [r.task for r in self._in_flight.values() if r.started and r.task is not None]
        if started:
            await asyncio.wait(started, timeout=grace)
        for record in list(self._in_flight.values()):
            if record.task is None or record.task.done() or not _cancellable(record):
                continue
            if record.started:
                record.cancel_reason = "the bridge is shutting down"
            # Not started: cancelled without an answer; the broker redelivers it.
            record.task.cancel()
        if self._tasks:
            # Bounded: the cancelled answers may wait on a broker that is gone.
            await asyncio.wait(list(self._tasks), timeout=self._settings.shutdown_flush)
        for task in list(self._tasks):
            task.cancel()
        health_task.cancel()
        await asyncio.gather(health_task, *self._tasks, return_exceptions=True)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("MQTT front task %s failed", task.get_name(), exc_info=task.exception())

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)
        return task

    # -- intake ------------------------------------------------------------------

    async def _consume(self) -> None:
        async for message in self._client.messages():
            if message.topic not in self._request_topics:
                log.warning("ignored a message on unexpected topic %s", message.topic)
                message.ack()
                continue
            self._take(message)

    def _take(self, message: IncomingMessage) -> None:
        try:
            envelope = self._handler.parse(message.payload)
        except Exception as exc:
            self.counters.requests += 1
            log.info("request without a usable id on %s: %s", message.topic, exc)
            answer = self._handler.error(None, exc)
            routing = self._routing(message, None, None)
            self._spawn(self._answer_and_ack(message, routing, None, answer, exc), "mqtt-invalid")
            return
        request_id = envelope.request_id
        routing = self._routing(message, request_id, envelope.response_topic)
        if request_id is None or envelope.rejection is not None:
            self.counters.requests += 1
            rejection = envelope.rejection or InvalidRequest("the request has no usable id")
            log.info("request %s rejected: %s", request_id, rejection)
            answer = self._handler.error(request_id, rejection)
            self._spawn(
                self._answer_and_ack(message, routing, request_id, answer, rejection),
                "mqtt-rejected",
            )
            return
        if envelope.cancel:
            self._cancel(message, routing, request_id)
            return
        self.counters.requests += 1
        record = self._in_flight.get(request_id)
        if record is not None:
            log.info("request %s redelivered while in flight: attached", request_id)
            task = self._spawn(self._answer_duplicate(message, routing, record), "mqtt-duplicate")
            record.dependents.append(task)
            return
        cached = self._cache.get(request_id)
        if cached is not None:
            log.info("request %s redelivered: answered from the dedupe cache", request_id)
            first = cached if isinstance(cached, _Delivered) else _Delivered(cached, None)
            self._spawn(self._deliver(message, routing, request_id, first), "mqtt-cached")
            return
        loop = asyncio.get_running_loop()
        record = _InFlight(request_id, loop.create_future(), loop.create_future(), envelope.observe)
        self._in_flight[request_id] = record
        record.task = self._spawn(
            self._serve(message, routing, envelope, record), f"mqtt-request-{request_id}"
        )

    def _routing(
        self, message: IncomingMessage, request_id: str | None, body_topic: str | None
    ) -> Routing:
        topic = answer_topic(
            self._base,
            request_id,
            body_response_topic=body_topic,
            mqtt5_response_topic=message.response_topic,
        )
        if topic_problem(topic) is not None:
            # An id with a wildcard or NUL cannot name a topic: not a usable id.
            topic = answer_topic(self._base, None)
        return Routing(topic, message.correlation_data)

    def _cancel(self, message: IncomingMessage, routing: Routing, request_id: str) -> None:
        record = self._in_flight.get(request_id)
        if record is None or record.task is None:
            log.info("cancel for request %s, which is not in flight", request_id)
            exc = InvalidRequest(f"no request with id {request_id!r} in flight to cancel")
            answer = self._handler.error(request_id, exc)
            self._spawn(
                self._answer_and_ack(message, routing, request_id, answer, exc), "mqtt-cancel"
            )
            return
        if not _cancellable(record):
            log.info("cancel for request %s, already answered: nothing to cancel", request_id)
        elif record.cancel_reason is None:
            log.info("request %s cancelled by a cancel request", request_id)
            record.cancel_reason = "cancelled by a cancel request"
            record.task.cancel()
        task = self._spawn(self._ack_when_finished(message, record), "mqtt-cancel")
        record.dependents.append(task)

    # -- serving -----------------------------------------------------------------

    async def _serve(
        self,
        message: IncomingMessage,
        routing: Routing,
        envelope: Envelope[RequestT],
        record: _InFlight,
    ) -> None:
        request_id = record.request_id
        holding = False
        answered = False
        failure: BaseException | None = None
        try:
            await self._slots.acquire()
            holding = True
            self._serving += 1
            record.started = True
            stream = self._handler.serve(envelope)
            try:
                async for answer in stream:
                    if not answered:
                        answered = True
                        first = _Delivered(self._encode(request_id, answer), None)
                        await self._first_answer(message, routing, record, first)
                        self._serving -= 1
                        holding = False
                        self._slots.release()
                    else:
                        # Notifications are not waited for: a slow broker must not stall
                        # the stream; they queue (bounded) in the client.
                        self._send(routing, request_id, self._encode(request_id, answer), None)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            if not answered:
                failure = BridgeError(f"request {request_id}: the handler gave no answer")
        except asyncio.CancelledError:
            if record.cancel_reason is None:
                raise  # shutdown before it started: no answer, the broker redelivers it
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            failure = Cancelled(f"request {request_id}: {record.cancel_reason}")
        except Exception as exc:
            failure = exc
        finally:
            if holding:
                self._serving -= 1
                self._slots.release()
            if failure is None or answered:
                self._forget(record)
        if failure is None:
            return
        kind = _kind(failure)
        log.info("request %s ended with %s: %s", request_id, kind, failure)
        delivered = _Delivered(
            self._encode(request_id, self._handler.error(request_id, failure)), kind
        )
        try:
            if answered:
                await self._publish(routing, request_id, delivered.payload, kind)
            else:
                await self._first_answer(message, routing, record, delivered)
        finally:
            self._forget(record)

    async def _first_answer(
        self, message: IncomingMessage, routing: Routing, record: _InFlight, first: _Delivered
    ) -> None:
        if not record.first_answer.done():
            record.first_answer.set_result(first)
        self._cache.put(record.request_id, first.payload if first.error_kind is None else first)
        # Shielded: a cancel arriving now must not stop the answer from being acked.
        delivery = self._spawn(
            self._deliver(message, routing, record.request_id, first), "mqtt-deliver"
        )
        await asyncio.shield(delivery)

    def _forget(self, record: _InFlight) -> None:
        if self._in_flight.get(record.request_id) is record:
            del self._in_flight[record.request_id]
        if not record.finished.done():
            record.finished.set_result(None)
        if not record.first_answer.done():
            record.first_answer.cancel()

    async def _answer_duplicate(
        self, message: IncomingMessage, routing: Routing, record: _InFlight
    ) -> None:
        first = await asyncio.shield(record.first_answer)
        await self._deliver(message, routing, record.request_id, first)

    async def _ack_when_finished(self, message: IncomingMessage, record: _InFlight) -> None:
        await asyncio.shield(record.finished)
        message.ack()

    async def _answer_and_ack(
        self,
        message: IncomingMessage,
        routing: Routing,
        request_id: str | None,
        answer: Answer,
        exc: BaseException,
    ) -> None:
        delivered = _Delivered(self._encode(request_id, answer), _kind(exc))
        await self._deliver(message, routing, request_id, delivered)

    async def _deliver(
        self, message: IncomingMessage, routing: Routing, request_id: str | None, first: _Delivered
    ) -> None:
        if await self._publish(routing, request_id, first.payload, first.error_kind):
            message.ack()

    # -- publishing --------------------------------------------------------------

    def _encode(self, request_id: str | None, answer: Answer) -> bytes:
        try:
            return json.dumps(answer).encode()
        except (TypeError, ValueError) as exc:
            log.error("request %s: answer is not JSON-serializable (%s)", request_id, exc)
            return json.dumps(self._handler.error(request_id, BridgeError(str(exc)))).encode()

    def _send(
        self, routing: Routing, request_id: str | None, payload: bytes, error_kind: str | None
    ) -> asyncio.Future[None]:
        """Count and publish one answer; the future completes on the broker's PUBACK."""
        if error_kind is None:
            self.counters.responses += 1
        else:
            self.counters.errors += 1
            if error_kind == "timeout":
                self.counters.timeouts += 1
        try:
            return self._client.publish(
                routing.topic,
                payload,
                qos=1,
                correlation_data=routing.correlation_data,
                content_type=JSON_CONTENT_TYPE,
            )
        except ValueError as exc:  # not a valid topic name: it can never be published
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(PublishRejected(str(exc)))
            failed.add_done_callback(lambda future: future.exception())
            return failed

    async def _publish(
        self, routing: Routing, request_id: str | None, payload: bytes, error_kind: str | None
    ) -> bool:
        """Publish one answer and wait for it; True when the request may be acked."""
        try:
            await self._send(routing, request_id, payload, error_kind)
        except PublishRejected as exc:
            log.error(
                "request %s: answer to %s rejected by the broker: %s",
                request_id,
                routing.topic,
                exc,
            )
            return True
        except MqttClientError as exc:
            log.warning(
                "request %s: answer to %s not published: %s", request_id, routing.topic, exc
            )
            return False
        return True

    # -- health ------------------------------------------------------------------

    def _on_connection(self, up: bool) -> None:
        if up:
            self._health_kick.set()

    async def _health_loop(self) -> None:
        topic = health_topic(self._base)
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that lands as the event fires, and this loop would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.health_interval):
                    await self._health_kick.wait()
            self._health_kick.clear()
            if self._client.connected:
                try:
                    payload = json.dumps(self.health_snapshot()).encode()
                except Exception:
                    log.exception("health snapshot failed")
                else:
                    self._client.publish(
                        topic, payload, retain=True, content_type=JSON_CONTENT_TYPE
                    )
            await asyncio.sleep(self._settings.health_min_gap)


def _cancellable(record: _InFlight) -> bool:
    """A plain request whose answer is out cannot be cancelled any more: a `cancelled`
    error after it would be a second answer."""
    return record.observe or not record.first_answer.done()


def _kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, BridgeError) else "internal"
