"""Where a request's answers go and how they are published and counted.

`Answers.route()` applies the contract's routing (`topics.answer_topic`: MQTT 5
Response Topic with its Correlation Data echoed, else the body's `response_topic`, else
`<base>/response/<id>`; no usable id: `<base>/response/invalid`). A Response Topic that
is one of the bridge's request topics, or starts with `$`, is refused (logged) and the
next choice used. Answers are JSON, QoS 1, not retained. `deliver()` acks the request
once its answer's PUBACK came back, or when the broker rejected it (a redelivery would
be rejected the same way); not when it was dropped or the link went first, so the
broker redelivers the request. `on_answer`, if given, hears of each first answer
delivered: "response" or the error kind, and the seconds since the request arrived.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import BridgeError
from bridge.mqtt.client import MqttClient
from bridge.mqtt.incoming import IncomingMessage
from bridge.mqtt.outbox import MqttClientError, PublishRejected, consume_result
from bridge.mqtt.topics import answer_topic, topic_problem

log = logging.getLogger(__name__)

Answer = Mapping[str, Any]
ErrorAnswer = Callable[[str | None, BaseException], Answer]
AnswerListener = Callable[[str, float], None]
JSON_CONTENT_TYPE = "application/json"


# NaN and Infinity are not JSON: strict parsers (JSON.parse) reject them. Built once:
# json.dumps with any argument of its own builds a new encoder on every call.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


# Cached answers are deflated against what answers have in common (their keys and usual
# values), which leaves little more than an answer's own values: a small answer's 250
# bytes become about 50. A 1 KiB window and level 1 keep a compression near 3 us.
_CACHE_ZDICT = _STRICT_JSON.encode(
    [
        {"ok": False, "error": {"kind": "timeout", "message": ""}},
        {
            "id": "",
            "ok": True,
            "code": "2.05",
            "code_name": "Content",
            "content_format": "text/plain;charset=utf-8",
        },
        {
            "options": {"etag": "", "observe": 0, "max_age": 0},
            "payload_encoding": "base64",
            "gateway": "",
        },
        {
            "content_format": "application/json",
            "options": {},
            "payload": "",
            "payload_encoding": "json",
            "rtt_ms": 1.0,
        },
    ]
).encode()
_CACHE_WBITS = -10
# Copied for each entry: cheaper than a new one loading the dictionary every time.
_CACHE_PACKER = zlib.compressobj(
    1, zlib.DEFLATED, _CACHE_WBITS, 2, zlib.Z_DEFAULT_STRATEGY, _CACHE_ZDICT
)


@dataclass(frozen=True)
class Routing:
    topic: str
    correlation_data: bytes | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """The first answer of a request, kept for duplicates and the dedupe cache.

    Kept as the JSON bytes that were published: the cache holds every answer of the
    dedupe window (thousands at full rate), and bytes are several times smaller than
    the dict they came from (and need no second encoding for a redelivery).
    """

    payload: bytes
    error_kind: str | None

    def cache_entry(self, digest: bytes) -> bytes:
        """The request's digest and this answer, deflated, as one bytes object: about 100
        bytes for a small answer instead of 450 as a tuple of the digest and the JSON."""
        kind = (self.error_kind or "").encode()
        packer = _CACHE_PACKER.copy()
        deflated = packer.compress(self.payload) + packer.flush()
        return b"".join((bytes((len(digest), len(kind))), digest, kind, deflated))

    @classmethod
    def from_cache_entry(cls, entry: bytes) -> tuple[bytes, Delivered]:
        """The digest and the answer a `cache_entry()` holds."""
        digest_end = 2 + entry[0]
        kind_end = digest_end + entry[1]
        kind = entry[digest_end:kind_end].decode() or None
        unpacker = zlib.decompressobj(_CACHE_WBITS, _CACHE_ZDICT)
        payload = unpacker.decompress(entry[kind_end:]) + unpacker.flush()
        return entry[2:digest_end], cls(payload, kind)


def error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, BridgeError) else "internal"


class Answers:
    """Publishes answers through `client`; `error` builds the contract's error object."""

    def __init__(
        self,
        client: MqttClient,
        base_topic: str,
        error: ErrorAnswer,
        on_answer: AnswerListener | None = None,
        inputs: Collection[str] = (),
        gateway_id: str = "",
    ) -> None:
        self._client = client
        self._base = base_topic
        self._error = error
        self._on_answer = on_answer
        # The topics the bridge reads requests from (the front adds the pool topic late).
        self._inputs = inputs
        # Named in everything published here, so a client sees which gateway served it.
        self._gateway = {"gateway": gateway_id} if gateway_id else {}

    def route(
        self, message: IncomingMessage, request_id: str | None, body_topic: str | None
    ) -> Routing:
        topic = answer_topic(
            self._base,
            request_id,
            body_response_topic=body_topic,
            mqtt5_response_topic=self._usable_response_topic(message, request_id),
        )
        if topic_problem(topic) is not None:
            # An id with a wildcard or NUL cannot name a topic: not a usable id.
            topic = answer_topic(self._base, None)
        return Routing(topic, message.correlation_data)

    def _usable_response_topic(
        self, message: IncomingMessage, request_id: str | None
    ) -> str | None:
        """The MQTT 5 Response Topic, unless answering there would loop or be refused."""
        topic = message.response_topic
        if not topic:
            return None
        if topic in self._inputs:
            problem = "it is a request topic of this bridge (the answer would be read as a request)"
        elif topic.startswith("$"):
            problem = "topics starting with '$' belong to the broker, which refuses publishes"
        else:
            return topic
        log.warning(
            "request %s: Response Topic %s refused: %s; answering on the default topic",
            request_id,
            topic,
            problem,
        )
        return None

    def encode(self, request_id: str | None, answer: Answer, *, answering: bool = True) -> bytes:
        """JSON of `answer`; an answer (`answering`) names the gateway that served it,
        other messages (`<base>/unsolicited`) have no such field in the contract."""
        gateway = self._gateway if answering else {}
        # Every answer is encoded here: copied only to add the gateway (or to make a dict
        # of another mapping, which the encoder needs).
        body = answer if not gateway and type(answer) is dict else {**answer, **gateway}
        try:
            return _STRICT_JSON.encode(body).encode()
        except (TypeError, ValueError) as exc:
            log.error("request %s: answer is not JSON-serializable (%s)", request_id, exc)
            error = self._error(request_id, BridgeError(str(exc)))
            return json.dumps({**error, **gateway}).encode()

    def error(self, request_id: str | None, exc: BaseException) -> Delivered:
        """The encoded error answer for `exc`."""
        return Delivered(self.encode(request_id, self._error(request_id, exc)), error_kind(exc))

    def send(self, routing: Routing, payload: bytes, kind: str | None) -> asyncio.Future[None]:
        """Count and publish one answer (`kind`: its error kind, None for a response);
        the future completes on the broker's PUBACK."""
        counters = self._client.stats
        if kind is None:
            counters.responses += 1
        else:
            counters.errors += 1
            if kind == "timeout":
                counters.timeouts += 1
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
            failed.add_done_callback(consume_result)
            return failed

    async def publish(self, routing: Routing, request_id: str | None, answer: Delivered) -> bool:
        """Publish one answer and wait for it; True when the request may be acked."""
        try:
            await self.send(routing, answer.payload, answer.error_kind)
        except MqttClientError as exc:
            return self._may_ack(routing, request_id, exc)
        return True

    def published(self, sent: asyncio.Future[None], routing: Routing, request_id: str) -> bool:
        """`publish()`'s verdict on a finished `send()`: True when the request may be
        acked. Raises what the publish raised that is no MQTT client error."""
        if sent.cancelled():
            return False
        failure = sent.exception()
        if failure is None:
            return True
        if isinstance(failure, MqttClientError):
            return self._may_ack(routing, request_id, failure)
        raise failure

    @staticmethod
    def _may_ack(routing: Routing, request_id: str | None, exc: MqttClientError) -> bool:
        if isinstance(exc, PublishRejected):
            log.error(
                "request %s: answer to %s rejected by the broker: %s",
                request_id,
                routing.topic,
                exc,
            )
            return True
        log.warning("request %s: answer to %s not published: %s", request_id, routing.topic, exc)
        return False

    async def deliver(
        self, message: IncomingMessage, routing: Routing, request_id: str | None, answer: Delivered
    ) -> None:
        """Publish the first answer of `message`'s request, then ack `message` if it may."""
        if self._on_answer is not None:
            seconds = time.monotonic() - message.received_at
            self._on_answer(answer.error_kind or "response", seconds)
        if await self.publish(routing, request_id, answer):
            message.ack()

    def deliver_now(
        self, message: IncomingMessage, routing: Routing, answer: Delivered
    ) -> asyncio.Future[None]:
        """The start of `deliver()`, for a caller that finishes it in a callback: counts
        and publishes now; `published()` then says whether `message` may be acked."""
        if self._on_answer is not None:
            seconds = time.monotonic() - message.received_at
            self._on_answer(answer.error_kind or "response", seconds)
        return self.send(routing, answer.payload, answer.error_kind)
