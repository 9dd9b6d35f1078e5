"""Whatever anyone on the broker publishes at `<base>/request`, through a running daemon:
never a crash, never a hang, never silence. Each published message gets exactly one
answer (on `<base>/response/invalid` with `"id": null` when it has no usable id), and
the daemon logs no traceback and keeps serving.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.daemon_config import BASE
from tests.reliability.conftest import Ledger, LedgerFactory, assert_serving

pytestmark = pytest.mark.timeout(120)

ERROR_KINDS = {
    "invalid_request",
    "forbidden_target",
    "timeout",
    "reset",
    "modem_unavailable",
    "modem_error",
    "cancelled",
    "internal",
}
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Counted:
    """Publishes one message at a time, each with its own MQTT 5 Correlation Data, and
    waits for the one answer it must get; the books match every answer to its publish."""

    def __init__(self, stack: BridgeStack, book: Ledger) -> None:
        self.stack = stack
        self.book = book
        # Correlation Data -> the id the answer must carry: the request's, or None when
        # the daemon may refuse it as unusable.
        self.published: dict[bytes, str | None] = {}

    def exchange(self, payload: bytes, within: float = 10.0) -> Any:
        """Publish `payload` and return its answer."""
        correlation = f"pub-{len(self.published)}".encode()
        self.published[correlation] = _request_id(payload)
        self.book.publish_correlated(payload, correlation)
        try:
            return self.book.wait_correlated(correlation, within)
        except AssertionError:
            raise AssertionError(f"no answer within {within:g} s to {payload!r:.300}") from None

    def check_books(self) -> None:
        self.book.settle()  # every answer published so far has arrived, duplicates too
        assert self.book.other == [], self.book.other[:5]
        correlated = dict(self.book.correlated)
        strays = sorted(set(correlated) - set(self.published))
        assert strays == [], f"answers to nothing published: {strays[:5]}"
        for correlation, request_id in self.published.items():
            answers = correlated.get(correlation, [])
            assert len(answers) == 1, f"{correlation!r}: {len(answers)} answers: {answers}"
            answer = answers[0]
            assert isinstance(answer, dict), answer
            # The request's own id is echoed, or null when it was not usable.
            assert answer.get("id") in (request_id, None), (request_id, answer)
            assert isinstance(answer.get("ok"), bool), answer
            if "error" in answer:
                assert answer["ok"] is False
                assert answer["error"]["kind"] in ERROR_KINDS, answer
                assert isinstance(answer["error"]["message"], str), answer
        log = self.stack.daemon_log()
        assert "Traceback" not in log, log[-4000:]
        assert " ERROR " not in log, log[-4000:]


def _request_id(payload: bytes) -> str | None:
    """The `id` a published payload carries, if it is a JSON object with a string id."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):  # the deeply nested cases
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str) else None


@pytest.fixture
def counted(bridge_stack: BridgeStackFactory, ledger: LedgerFactory) -> Iterator[Counted]:
    # Short CoAP timeouts: an arbitrary request may well address a port nobody serves.
    stack = bridge_stack(overrides={"coap.default_timeout": 2, "coap.max_timeout": 3})
    book = ledger(stack)
    counted = Counted(stack, book)
    yield counted
    # After all of a test's examples: the books balance, and the daemon still serves.
    counted.check_books()
    assert_serving(stack, book)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
plausible_ids = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12
)
# Mostly usable ids (repeated branches weigh the choice), so most objects get past the
# id check and exercise the rest of the parser and the serving path.
request_ids = st.one_of(
    plausible_ids, plausible_ids, plausible_ids, st.text(max_size=70), json_values
)
good_uris = st.sampled_from(["coap://lab/hello", "coap://lab/count?id=fuzz", "coap://lab/echo"])
uris = st.one_of(
    good_uris,
    good_uris,
    st.sampled_from(
        [
            "coap://lab/hello",
            "coap://lab/count?id=fuzz",
            "coap://lab/nothing-here",
            "coap://127.0.0.1/x",
            "coap://10.1.2.3/x",
            "coap://lab:99999/x",
            "coap://user@lab/x",
            "coap://lab/x#frag",
            "coaps://lab/x",
            "http://lab/x",
            "coap://",
            "coap://[::1/x",
        ]
    ),
    st.text(max_size=40),
    json_values,
)
wild_requests = st.fixed_dictionaries(
    {"id": request_ids, "uri": uris},
    optional={
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "FETCH", "iPATCH", "BREW"])
        | json_values,
        "type": st.sampled_from(["CON", "NON", "ACK"]) | json_values,
        "content_format": st.sampled_from(["application/json", "text/plain", 60, 65536])
        | json_values,
        "accept": st.sampled_from(["application/cbor", 0, -1]) | json_values,
        "options": st.dictionaries(
            st.sampled_from(["if_match", "etag", "observe", "max_age", "bogus"]), json_values
        )
        | json_values,
        "payload": json_values,
        "payload_encoding": st.sampled_from(["json", "text", "base64", "hex", "zip"]) | json_values,
        # Never `true`: an observation streams several answers, by design.
        "observe": st.just(False) | st.integers() | st.text(max_size=5),
        "timeout": st.floats(allow_nan=True) | st.integers() | json_values,
        "response_topic": st.sampled_from(
            [f"{BASE}/response/fuzz", f"{BASE}/response/+", f"{BASE}/other", "elsewhere/x"]
        )
        | st.text(max_size=30),
        "cancel": st.booleans(),
        "extra": json_values,
    },
)
# Close to valid, so that many reach the CoAP server and come back through the mapping.
plausible_requests = st.fixed_dictionaries(
    {"id": plausible_ids, "uri": good_uris},
    optional={
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH"]),
        "type": st.sampled_from(["CON", "NON"]),
        "content_format": st.sampled_from(["application/json", "text/plain", 42, 60]),
        "accept": st.sampled_from(["application/json", "text/plain", 0]),
        "options": st.fixed_dictionaries(
            {}, optional={"etag": st.just(["hex:0a1b"]), "if_match": st.just(["hex:00"])}
        ),
        "payload": json_values,
        "payload_encoding": st.sampled_from(["json", "text", "hex", "base64"]),
        "timeout": st.floats(min_value=0.5, max_value=3),
        "response_topic": st.sampled_from([f"{BASE}/response/fuzz", f"{BASE}/response/a/b"]),
    },
)
request_objects = st.one_of(plausible_requests, wild_requests)


@HYPOTHESIS
@given(payload=st.binary(max_size=2000))
def test_arbitrary_bytes_get_one_answer_each(counted: Counted, payload: bytes) -> None:
    counted.exchange(payload)


@HYPOTHESIS
@given(value=json_values)
def test_arbitrary_json_gets_one_answer_each(counted: Counted, value: Any) -> None:
    counted.exchange(json.dumps(value).encode())


@settings(HYPOTHESIS, max_examples=80)
@given(body=request_objects)
def test_request_shaped_objects_get_one_answer_each(counted: Counted, body: dict[str, Any]) -> None:
    counted.exchange(json.dumps(body).encode())


def test_edge_payloads_get_one_answer_each(counted: Counted) -> None:
    for payload in (b"", b"\xff", b"null", b"[]", b'{"id": ""}', b'{"id": "a", "uri": 1}'):
        counted.exchange(payload)


# -- specific cases -------------------------------------------------------------------------

INVALID = "invalid_request"
# The cases, by name: tests/mapping/test_schema.py holds the request schema to them too.
WRONG_TYPES = (
    ("method", 5),
    ("uri", ["coap://lab/hello"]),
    ("timeout", "soon"),
    ("timeout", -1),
    ("type", True),
    ("options", []),
    ("observe", "yes"),
    ("payload_encoding", "rot13"),
    ("content_format", {"x": 1}),
    ("cancel", "please"),
)
# coap:// URIs the bridge must not take apart creatively.
BAD_URIS = (
    "coap://user:secret@lab/hello",
    "coap://user@127.0.0.1/x",
    "coap://lab/hello#fragment",
    "coap://127.0.0.1:65536/x",
    "coap://127.0.0.1:99999999999/x",
    "coap://127.0.0.1:-1/x",
    "coap://127.0.0.1:0/x",
    "coaps://lab/hello",
    "http://lab/hello",
    "coap:///x",
    "coap://[::1/x",
    "coap://lab/he llo",
    "coap://lab/\x00",
)
# response_topic: wildcards, NUL, characters brokers refuse, and outside the prefix.
_RESPONSE = f"{BASE}/response/"
BAD_RESPONSE_TOPICS = (
    _RESPONSE + "+",
    _RESPONSE + "#",
    _RESPONSE + "a/+/b",
    _RESPONSE + "a\x00b",
    _RESPONSE + "a\ufffeb",
    _RESPONSE + "a\x85b",
    _RESPONSE,
    f"{BASE}/other",
    f"{BASE}/request",
    "elsewhere/response/x",
    f"{BASE}/responsex",
    "",
)


def _expect(
    counted: Counted, payload: bytes, request_id: str | None, kind: str, topic: str
) -> dict[str, Any]:
    counted.exchange(payload)
    book = counted.book
    answer = book.single(request_id)
    assert book.topics[request_id] == [topic], book.topics[request_id]
    assert answer["ok"] is False, answer
    assert answer["error"]["kind"] == kind, answer
    # Consumed, so a later case with the same id is checked on its own.
    del book.answers[request_id]
    del book.topics[request_id]
    return answer


def test_specific_bad_requests(counted: Counted) -> None:
    response = f"{BASE}/response/"
    invalid = response + "invalid"
    hello = "coap://lab/hello"

    def expect(body: Any, kind: str = INVALID, *, topic: str | None = None) -> dict[str, Any]:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        request_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(request_id, str):
            request_id = None
        return _expect(counted, payload, request_id, kind, topic or response + str(request_id))

    # A 1 MiB payload is refused before it is parsed; so is a deeply nested document.
    big_body = {"id": "big", "uri": hello, "payload": "x" * (1 << 20)}
    big = expect(json.dumps(big_body).encode(), topic=invalid)
    assert "bytes" in big["error"]["message"]
    expect(b"[" * 100_000 + b"]" * 100_000, topic=invalid)
    deep = '{"id": "deep", "uri": "coap://lab/hello", "payload": ' + "[" * 5000 + "]" * 5000 + "}"
    expect(deep.encode(), topic=invalid)
    assert _ok(counted, {"id": "nested", "uri": hello, "payload": {"a": {"b": [[[[1]]]]}}})["ok"]

    # Wrong types.
    expect({"id": 5, "uri": hello}, topic=invalid)
    expect({"id": ["x"], "uri": hello}, topic=invalid)
    for field, value in WRONG_TYPES:
        body = {"id": f"type-{field}", "uri": hello, field: value}
        assert field in expect(body)["error"]["message"], body

    # Unknown method.
    assert "BREW" in expect({"id": "brew", "method": "BREW", "uri": hello})["error"]["message"]

    for n, uri in enumerate(BAD_URIS):
        expect({"id": f"uri-{n}", "uri": uri})

    for n, topic in enumerate(BAD_RESPONSE_TOPICS):
        expect({"id": f"rt-{n}", "uri": hello, "response_topic": topic})
    ok = _ok(counted, {"id": "rt-ok", "uri": hello, "response_topic": response + "app-7"})
    assert counted.book.topics["rt-ok"] == [response + "app-7"]
    assert ok["ok"]


def test_ids_that_cannot_name_a_topic_are_answered_on_response_invalid(
    counted: Counted,
) -> None:
    # Regression: an id with a Unicode noncharacter or a C1 control made the answer's
    # topic one mosquitto refuses as a malformed packet. It dropped the daemon's
    # connection, the request came back (unacknowledged) and the answer went out again:
    # the daemon was stuck reconnecting and served nobody.
    for request_id in ("a\ufffeb", "a\U0010ffffb", "a\x85b", "a\ufdd0b", "a\ud800b"):
        # ensure_ascii (the default) keeps a lone surrogate expressible in JSON.
        payload = json.dumps({"id": request_id, "uri": "coap://lab/hello"}).encode()
        counted.exchange(payload)
        # Served or refused (the mapping may still find the id usable), but answered on
        # the one topic that is always publishable.
        key = request_id if request_id in counted.book.answers else None
        assert counted.book.topics.pop(key) == [f"{BASE}/response/invalid"]
        counted.book.answers.pop(key)
    # Still connected and serving (the fixture's teardown asks it once more).
    assert _ok(counted, {"id": "after", "uri": "coap://lab/hello"})["ok"]
    assert "malformed" not in counted.stack.daemon_log().lower()


def _ok(counted: Counted, body: dict[str, Any]) -> dict[str, Any]:
    counted.exchange(json.dumps(body).encode())
    return counted.book.single(body["id"])
