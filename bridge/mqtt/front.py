"""`RequestFront`: takes requests off MQTT and answers them through a `RequestHandler`.

It acks, bounds, deduplicates (cache and journal), cancels and routes answers; it knows
nothing of CoAP or of the request's JSON (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from bridge.errors import BridgeError, Cancelled, InvalidRequest
from bridge.mqtt.answers import (
    JSON_CONTENT_TYPE,
    Answer,
    AnswerListener,
    Answers,
    Delivered,
    Routing,
    error_kind,
)
from bridge.mqtt.client import MqttClient
from bridge.mqtt.dedupe import AnswerCache
from bridge.mqtt.delivery import FirstAnswers
from bridge.mqtt.envelope import Envelope, RequestHandler
from bridge.mqtt.health import HealthPublisher, InfoPublisher
from bridge.mqtt.incoming import IncomingMessage
from bridge.mqtt.inflight import InFlight, cancellable, request_digest
from bridge.mqtt.journal import AnswerJournal
from bridge.mqtt.pool import PoolMembership, pool_membership
from bridge.mqtt.settings import FrontSettings
from bridge.mqtt.stats import MqttStats
from bridge.mqtt.topics import request_topic, unsolicited_topic

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
P = ParamSpec("P")


class RequestFront(Generic[RequestT]):
    def __init__(
        self,
        client: MqttClient,
        handler: RequestHandler[RequestT],
        settings: FrontSettings,
        *,
        health: Callable[[], Mapping[str, Any]] | None = None,
        on_answer: AnswerListener | None = None,
    ) -> None:
        self._client = client
        self._handler = handler
        self._settings = settings
        self._request_topics = {request_topic(settings.base_topic)}
        self._answers = Answers(
            client,
            settings.base_topic,
            handler.error,
            on_answer,
            self._request_topics,
            settings.gateway_id,
        )
        self._first_answers = FirstAnswers(self._answers, self._commit_journal)
        self._health = HealthPublisher(client, settings, health, self._mqtt_health)
        self._info = InfoPublisher(client, settings.base_topic)
        self._base = settings.base_topic
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        # Keyed by id: the digest of the request the answer belongs to and the answer, in
        # one bytes object (`Delivered.cache_entry`).
        self._cache: AnswerCache[bytes] = AnswerCache(
            settings.dedupe_window, settings.dedupe_max_entries
        )
        self._in_flight: dict[str, InFlight] = {}
        self._group = asyncio.TaskGroup()  # intake and health
        self._requests = asyncio.TaskGroup()  # per-request work
        self._background: list[asyncio.Task[None]] = []
        self._serving = 0
        self._journal: AnswerJournal | None = None
        self._pool: PoolMembership | None = None

    # -- public API --------------------------------------------------------------

    @property
    def counters(self) -> MqttStats:
        """The MQTT layer's counters (`client.stats`)."""
        return self._client.stats

    @counters.setter
    def counters(self, counters: MqttStats) -> None:
        self._client.stats = counters

    @property
    def serving(self) -> int:
        """Requests holding a concurrency slot now."""
        return self._serving

    @property
    def waiting(self) -> int:
        """Requests received but not yet given a slot."""
        return sum(1 for record in self._in_flight.values() if not record.started)

    def publish_unsolicited(self, body: Answer) -> asyncio.Future[None]:
        """`<base>/unsolicited`, QoS 1, queued (bounded) while the link is down; the
        future completes on the broker's ack (callers need not wait for it)."""
        return self._client.publish(
            unsolicited_topic(self._base),
            self._answers.encode(None, body, answering=False),
            content_type=JSON_CONTENT_TYPE,
        )

    def set_pool_wanted(self, wanted: bool) -> None:
        """Join the pool (True) or leave it (False); the service follows modem readiness."""
        if self._pool is not None:
            self._pool.set_wanted(wanted)

    def health_changed(self) -> None:
        """Publish health soon (coalesced: at most one per `health_min_gap`)."""
        self._health.kick()

    def health_snapshot(self) -> dict[str, Any]:
        return self._health.snapshot()

    def set_info(self, info: Answer) -> None:
        """Publish `<base>/info` (retained) now, and again on every connect."""
        self._info.set(info)

    def _mqtt_health(self) -> dict[str, Any]:
        mqtt: dict[str, Any] = {"broker": self._client.broker}
        if self._pool is not None:
            mqtt["pool"] = self._pool.health()
        return mqtt

    async def __aenter__(self) -> RequestFront[RequestT]:
        settings = self._settings
        if settings.state_dir is not None:
            self._journal = AnswerJournal.open(
                settings.state_dir,
                settings.dedupe_window,
                settings.dedupe_max_entries,
                defer=asyncio.get_running_loop().call_soon,
            )
        self._pool = pool_membership(self._client, settings, self._take)
        if self._pool is not None:
            self._request_topics.add(f"{settings.pool_topic}/request")
        self._client.add_subscription(request_topic(self._base))
        self._client.add_connection_listener(self._health.on_connection)
        self._client.add_connection_listener(self._info.on_connection)
        await self._group.__aenter__()
        await self._requests.__aenter__()
        self._background = [
            self._group.create_task(self._consume(), name="mqtt-front-requests"),
            self._group.create_task(self._health.run(), name="mqtt-front-health"),
        ]
        if self._pool is not None:
            self._background.append(self._group.create_task(self._pool.run(), name="mqtt-pool"))
        self._health.kick()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        consume, health_task, *pool = self._background
        # Intake stops on both connections, the pool's first: the broker stops handing
        # this gateway pooled requests while the others are being finished.
        for task in (*pool, consume):
            task.cancel()
        await asyncio.wait([*pool, consume])
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
            if record.task is None or record.task.done() or not cancellable(record):
                continue
            if record.started:
                record.cancel_reason = "the bridge is shutting down"
            # Not started: cancelled without an answer; the broker redelivers it.
            record.task.cancel()
        # Bounded: the cancelled answers may wait on a broker that is gone. On the
        # timeout the group cancels what is left.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.shutdown_flush):
                await self._requests.__aexit__(None, None, None)
                await self._first_answers.drain()
        self._first_answers.abandon()
        health_task.cancel()
        await self._health.publish_final()
        await self._group.__aexit__(None, None, None)
        if self._journal is not None:
            self._journal.close()

    def _spawn(
        self, name: str, work: Callable[P, Awaitable[None]], *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Task[None]:
        return self._requests.create_task(self._guarded(name, work, *args, **kwargs), name=name)

    @staticmethod
    async def _guarded(
        name: str, work: Callable[P, Awaitable[None]], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        # One request's failure is logged; it must not end the front's task group.
        try:
            await work(*args, **kwargs)
        except Exception:
            log.exception("MQTT front task %s failed", name)

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
            self._client.stats.requests += 1
            log.info("request without a usable id on %s: %s", message.topic, exc)
            routing = self._answers.route(message, None, None)
            answer = self._answers.error(None, exc)
            self._spawn("mqtt-invalid", self._answers.deliver, message, routing, None, answer)
            return
        request_id = envelope.request_id
        routing = self._answers.route(message, request_id, envelope.response_topic)
        if request_id is None or envelope.rejection is not None:
            self._client.stats.requests += 1
            rejection = envelope.rejection or InvalidRequest("the request has no usable id")
            log.info("request %s rejected: %s", request_id, rejection)
            answer = self._answers.error(request_id, rejection)
            self._spawn(
                "mqtt-rejected", self._answers.deliver, message, routing, request_id, answer
            )
            return
        if envelope.cancel:
            self._cancel(message, routing, request_id)
            return
        self._client.stats.requests += 1
        digest = request_digest(message.payload)
        record = self._in_flight.get(request_id)
        entry = self._cache.get(request_id) if record is None else None
        cached = None if entry is None else Delivered.from_cache_entry(entry)
        if (record is not None and record.digest != digest) or (
            cached is not None and cached[0] != digest
        ):
            self._refuse_reused_id(message, routing, request_id)
            return
        if record is not None:
            log.info("request %s redelivered while in flight: attached", request_id)
            self._client.stats.dedupe_hits += 1
            task = self._spawn("mqtt-duplicate", self._answer_duplicate, message, routing, record)
            record.dependents.append(task)
            return
        if cached is not None:
            log.info("request %s redelivered: answered from the dedupe cache", request_id)
            self._client.stats.dedupe_hits += 1
            self._spawn(
                "mqtt-cached", self._answers.deliver, message, routing, request_id, cached[1]
            )
            return
        if self._journal is not None and self._from_journal(message, routing, request_id, digest):
            return
        loop = asyncio.get_running_loop()
        record = InFlight(
            request_id, digest, loop.create_future(), loop.create_future(), envelope.observe
        )
        self._in_flight[request_id] = record
        record.task = self._spawn(
            f"mqtt-request-{request_id}", self._serve, message, routing, envelope, record
        )

    def _refuse_reused_id(
        self, message: IncomingMessage, routing: Routing, request_id: str
    ) -> None:
        log.info("request %s refused: its id is in use by a different request", request_id)
        reused = InvalidRequest(
            f"id {request_id!r} is already used by a different request; "
            "choose a new id for each request"
        )
        answer = self._answers.error(request_id, reused)
        self._spawn("mqtt-reused", self._answers.deliver, message, routing, request_id, answer)

    def _from_journal(
        self, message: IncomingMessage, routing: Routing, request_id: str, digest: bytes
    ) -> bool:
        """Answer a request a previous process answered; count one it was serving."""
        assert self._journal is not None
        journaled = self._journal.answered(request_id)
        if journaled is not None and journaled.digest != digest:
            self._refuse_reused_id(message, routing, request_id)
            return True
        if journaled is not None:
            log.info("request %s redelivered: answered from the dedupe journal", request_id)
            self._client.stats.dedupe_hits += 1
            first = Delivered(journaled.payload, journaled.error_kind)
            self._spawn(
                "mqtt-journaled", self._answers.deliver, message, routing, request_id, first
            )
            return True
        if self._journal.take_replayed(request_id):
            self._client.stats.replayed_after_restart += 1
            log.warning(
                "request %s was being served when the last process stopped: serving it again",
                request_id,
            )
        return False

    def _cancel(self, message: IncomingMessage, routing: Routing, request_id: str) -> None:
        record = self._in_flight.get(request_id)
        if record is None or record.task is None:
            log.info("cancel for request %s, which is not in flight", request_id)
            exc = InvalidRequest(f"no request with id {request_id!r} in flight to cancel")
            answer = self._answers.error(request_id, exc)
            self._spawn("mqtt-cancel", self._answers.deliver, message, routing, request_id, answer)
            return
        if not cancellable(record):
            log.info("cancel for request %s, already answered: nothing to cancel", request_id)
        elif record.cancel_reason is None:
            log.info("request %s cancelled by a cancel request", request_id)
            record.cancel_reason = "cancelled by a cancel request"
            record.task.cancel()
        task = self._spawn("mqtt-cancel", self._ack_when_finished, message, record)
        record.dependents.append(task)

    async def _serve(
        self,
        message: IncomingMessage,
        routing: Routing,
        envelope: Envelope[RequestT],
        record: InFlight,
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
            if self._journal is not None:
                self._journal.started(request_id)
            stream = self._handler.serve(envelope)
            try:
                async for answer in stream:
                    if not answered:
                        answered = True
                        first = Delivered(self._answers.encode(request_id, answer), None)
                        await self._first_answer(message, routing, record, first)
                        self._serving -= 1
                        holding = False
                        self._slots.release()
                    else:
                        # Notifications are not waited for: a slow broker must not stall
                        # the stream; they queue (bounded) in the client.
                        self._answers.send(routing, self._answers.encode(request_id, answer), None)
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
        log.info("request %s ended with %s: %s", request_id, error_kind(failure), failure)
        delivered = self._answers.error(request_id, failure)
        try:
            if answered:
                await self._answers.publish(routing, request_id, delivered)
            else:
                await self._first_answer(message, routing, record, delivered)
        finally:
            self._forget(record)

    async def _first_answer(
        self, message: IncomingMessage, routing: Routing, record: InFlight, first: Delivered
    ) -> None:
        if not record.first_answer.done():
            record.first_answer.set_result(first)
        # A stream is deduplicated while it runs (redeliveries attach to it); once it has
        # ended, the same request observes anew rather than get its old first answer.
        if not record.observe:
            self._cache.put(record.request_id, first.cache_entry(record.digest))
        if self._journal is not None:
            if record.observe:
                self._journal.finished(record.request_id)
            else:
                self._journal.record(
                    record.request_id, record.digest, first.payload, first.error_kind
                )
        # A cancel arriving now ends only this wait, not the delivery nor the ack.
        await self._first_answers.deliver(message, routing, record.request_id, first)

    def _commit_journal(self) -> None:
        if self._journal is not None:
            # Once the answer may have gone out, a redelivery must find it in the journal.
            # One commit takes every answer journaled since the last one.
            self._journal.commit()

    def _forget(self, record: InFlight) -> None:
        if self._in_flight.get(record.request_id) is record:
            del self._in_flight[record.request_id]
        if not record.finished.done():
            record.finished.set_result(None)
        if not record.first_answer.done():
            record.first_answer.cancel()

    async def _answer_duplicate(
        self, message: IncomingMessage, routing: Routing, record: InFlight
    ) -> None:
        first = await asyncio.shield(record.first_answer)
        await self._answers.deliver(message, routing, record.request_id, first)

    async def _ack_when_finished(self, message: IncomingMessage, record: InFlight) -> None:
        await asyncio.shield(record.finished)
        message.ack()
