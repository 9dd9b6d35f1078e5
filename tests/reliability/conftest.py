"""Helpers of the reliability tests: a requester that keeps books on every answer.

`Ledger` is an MQTT 5 client with a persistent session that re-subscribes on every
connect, so it rides out broker restarts without losing answers, and records every
answer under its request id. The tests publish a batch, wait until every id has an
answer, then for the answer to a sentinel request (below), then check the books: one
answer per id, of an expected kind, and (through `/count?id=<id>` on the e2e CoAP
server) at most one exchange per id reaching the CoAP server.

The sentinel is a request without `uri`, which the daemon answers `invalid_request` at
once. Answers reach the ledger in the order the daemon published them (one connection,
one subscription, QoS 1), so once the sentinel's answer is in, any duplicate the daemon
published for an earlier request is in too: no sleep is needed to see duplicates.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fixtures.contract import CONTRACT, ContractViolation
from tests.fixtures.daemon import BridgeStack
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.mqtt_client import paho_client, start_client, stop_client
from tests.fixtures.wait import eventually

# How long the sentinel's answer may take: it is answered without a CoAP exchange, but
# after a broker restart it waits for the daemon's reconnect like any request.
SENTINEL_TIMEOUT = 30.0


class Ledger:
    """Publishes requests on `<base>/request` and records the answers by request id."""

    def __init__(
        self, broker: MosquittoBroker, base: str, *, username: str = "", password: str = ""
    ) -> None:
        self.base = base
        self.answers: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        self.topics: dict[str | None, list[str]] = defaultdict(list)
        self.other: list[tuple[str, bytes]] = []
        # Answers by the Correlation Data of their request (`publish_correlated`).
        self.correlated: dict[bytes, list[Any]] = defaultdict(list)
        self.violations: list[str] = []  # answers off docs/asyncapi.yaml
        self.received = 0  # every message on <base>/response/#, ever
        self._condition = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho_client(
            broker,
            client_id=f"ledger-{uuid.uuid4().hex[:8]}",
            username=username,
            password=password,
        )
        # paho annotates ints but computes with floats; sub-second retries keep the
        # broker-restart tests short.
        self._client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # The broker keeps the subscription and queues answers while we are away.
        connect.SessionExpiryInterval = 600
        start_client(
            self._client,
            broker,
            self._subscribed,
            "ledger subscribed",
            keepalive=5,
            clean_start=False,
            properties=connect,
        )

    def close(self) -> None:
        stop_client(self._client)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"{self.base}/response/#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = None
        try:
            CONTRACT.check(message.topic, message.payload, base=self.base, retain=message.retain)
            violation = None
        except ContractViolation as exc:
            violation = str(exc)
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._condition:
            if violation is not None:
                self.violations.append(violation)
            self.received += 1
            if correlation is not None:
                self.correlated[bytes(correlation)].append(body)
            if isinstance(body, dict) and "id" in body:
                request_id = body["id"] if isinstance(body["id"], str) else None
                self.answers[request_id].append(body)
                self.topics[request_id].append(message.topic)
            else:
                self.other.append((message.topic, bytes(message.payload)))
            self._condition.notify_all()

    # -- requests ------------------------------------------------------------------------

    def publish(self, payload: bytes | str, properties: Properties | None = None) -> None:
        """QoS 1 on `<base>/request`; while the broker is down paho keeps it for later."""
        self._client.publish(f"{self.base}/request", payload, qos=1, properties=properties)

    def publish_correlated(self, payload: bytes | str, correlation: bytes) -> None:
        """Publish with MQTT 5 Correlation Data, which the daemon echoes on the answer:
        the answer is matched to this very publish, whatever its payload."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = correlation
        self.publish(payload, properties)

    def wait_correlated(self, correlation: bytes, timeout: float) -> Any:
        """The first answer carrying `correlation`, waited for up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self.correlated.get(correlation):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no answer to {correlation!r} within {timeout:g} s")
                self._condition.wait(remaining)
            return self.correlated[correlation][0]

    def request(self, request_id: str, uri: str, **fields: Any) -> str:
        self.publish(json.dumps({"id": request_id, "method": "GET", "uri": uri, **fields}))
        return request_id

    def count_requests(self, prefix: str, n: int, **fields: Any) -> list[str]:
        """`n` GETs of `/count?id=<id>` on the `lab` server; returns their ids."""
        ids = [f"{prefix}-{i}" for i in range(n)]
        for request_id in ids:
            self.request(request_id, f"coap://lab/count?id={request_id}", **fields)
        return ids

    # -- books ---------------------------------------------------------------------------

    def wait_answered(
        self, ids: Iterable[str | None], timeout: float, *, settle: bool = True
    ) -> None:
        """Wait until every id has an answer, then for the sentinel's (see the module);
        `settle=False` while no daemon runs to answer a sentinel."""
        self._wait_for(list(ids), timeout)
        if settle:
            self.settle()

    def settle(self, timeout: float = SENTINEL_TIMEOUT) -> None:
        """Publish a sentinel request and wait for its `invalid_request`: every answer the
        daemon published before it has then arrived, duplicates included."""
        sentinel = f"sentinel-{uuid.uuid4().hex[:8]}"
        self.publish(json.dumps({"id": sentinel, "method": "GET"}))
        self._wait_for([sentinel], timeout)
        answer = self.single(sentinel)
        assert answer.get("error", {}).get("kind") == "invalid_request", answer

    def _wait_for(self, wanted: list[str | None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._condition:
            while missing := [i for i in wanted if not self.answers.get(i)]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(missing)} of {len(wanted)} requests unanswered after "
                        f"{timeout:g} s: {missing[:10]}"
                    )
                self._condition.wait(remaining)

    def unanswered(self, ids: Iterable[str]) -> list[str]:
        """The ids that have no answer yet."""
        with self._condition:
            return [i for i in ids if not self.answers.get(i)]

    def single(self, request_id: str | None) -> dict[str, Any]:
        """The one answer of `request_id` (AssertionError if none or several)."""
        with self._condition:
            answers = list(self.answers.get(request_id, []))
        assert len(answers) == 1, f"{request_id}: {len(answers)} answers: {answers}"
        return answers[0]

    def one_answer_each(self, ids: Iterable[str], *, identical_repeats: bool = False) -> None:
        """Exactly one answer per id; with `identical_repeats`, repeats are allowed only as
        identical copies (QoS 1 is at-least-once: an answer whose PUBACK a broker restart
        swallowed is published again, and the redelivered request is answered from the
        dedupe cache with the same object)."""
        for request_id in ids:
            with self._condition:
                answers = list(self.answers.get(request_id, []))
            assert answers, f"{request_id}: no answer"
            if identical_repeats:
                assert all(a == answers[0] for a in answers), f"{request_id}: {answers}"
            else:
                assert len(answers) == 1, f"{request_id}: {len(answers)} answers: {answers}"

    def kinds(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> "ok", "coap <code>" or the error kind, of the first answer."""
        result = {}
        for request_id in ids:
            answer = self.answers[request_id][0]
            if answer.get("ok"):
                result[request_id] = "ok"
            elif isinstance(answer.get("error"), dict):
                result[request_id] = str(answer["error"]["kind"])
            else:
                result[request_id] = f"coap {answer.get('code')}"
        return result


LedgerFactory = Callable[..., Ledger]


@pytest.fixture
def ledger() -> Iterator[Callable[..., Ledger]]:
    """`ledger(stack)`: a Ledger on the stack's broker and base topic; closed at teardown."""
    made: list[Ledger] = []

    def make(stack: BridgeStack, **options: Any) -> Ledger:
        book = Ledger(stack.broker, stack.base, **options)
        made.append(book)
        return book

    yield make
    for book in made:
        book.close()
    for book in made:
        if book.violations:
            raise ContractViolation("\n".join(book.violations[:5]))


def assert_serving(
    stack: BridgeStack, book: Ledger, tag: str = "after", within: float = 20
) -> None:
    """The daemon is alive and answers a fresh request with a CoAP response.

    After a modem fault the daemon answers `modem_unavailable` at once until bring-up is
    done (failing fast is the contract), so those answers are followed by another try.
    """

    def served() -> bool:
        assert stack.process is not None
        assert stack.process.poll() is None, stack.daemon_log()[-3000:]
        request_id = f"{tag}-{uuid.uuid4().hex[:6]}"
        book.request(request_id, "coap://lab/hello")
        book.wait_answered([request_id], timeout=within)
        answer = book.single(request_id)
        if answer["ok"] is True:
            return True
        assert answer.get("error", {}).get("kind") == "modem_unavailable", answer
        return False

    eventually(served, within, "a fresh request answered with a CoAP response", interval=0.3)


def server_hits(stack: BridgeStack, ids: Iterable[str]) -> dict[str, int]:
    return {request_id: stack.coap.hits(request_id) for request_id in ids}


def wait_server_saw(stack: BridgeStack, ids: Iterable[str], count: int, within: float = 15) -> None:
    """Wait until the CoAP server has seen at least `count` of `ids` (a fault injected
    then catches the others, or their responses, on the way)."""
    wanted = list(ids)
    eventually(
        lambda: sum(1 for hits in server_hits(stack, wanted).values() if hits) >= count,
        within,
        f"the CoAP server saw {count} of {len(wanted)} requests",
    )


def wait_health(
    stack: BridgeStack, holds: Callable[[dict[str, Any]], bool], what: str, within: float = 15
) -> dict[str, Any]:
    """Wait for a published health object for which `holds(health)`; returns it."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [stack.health()]
        return holds(found[0])

    try:
        eventually(check, within, what, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last health: {found[:1]}") from None
    return found[0]
