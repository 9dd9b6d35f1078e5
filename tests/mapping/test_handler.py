"""CoapRequests.parse and .error: what the MQTT front gets for each kind of payload."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from bridge.coap.router import ModemRouter
from bridge.config import Settings
from bridge.errors import CoapTimeout
from bridge.mapping import CoapRequests, MalformedRequest, ParsedRequest, TargetNotAllowed
from bridge.mapping.parse import parse_request
from bridge.mqtt import Envelope

from .conftest import BASE, make_settings


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def handler(settings: Settings) -> CoapRequests:
    # parse and error never touch a modem: the router has none running.
    return CoapRequests(settings, ModemRouter(["modem"]))


def test_plain_request_carries_the_parsed_request(
    handler: CoapRequests, settings: Settings
) -> None:
    payload = encode({"id": "r1", "uri": "coap://meters/v1/temp"})
    envelope = handler.parse(payload)
    assert envelope == Envelope("r1", parse_request(payload, settings))
    assert isinstance(envelope.request, ParsedRequest)
    assert (envelope.request.host, envelope.request.path) == ("127.0.0.1", ("v1", "temp"))


def test_body_response_topic_and_observe_reach_the_envelope(handler: CoapRequests) -> None:
    topic = f"{BASE}/response/mine"
    envelope = handler.parse(
        encode({"id": "o1", "uri": "coap://meters/obs", "observe": True, "response_topic": topic})
    )
    assert (envelope.request_id, envelope.response_topic) == ("o1", topic)
    assert envelope.observe is True
    assert envelope.cancel is False
    assert envelope.rejection is None


def test_cancel_request_has_no_request(handler: CoapRequests) -> None:
    topic = f"{BASE}/response/mine"
    envelope = handler.parse(encode({"id": "o1", "cancel": True, "response_topic": topic}))
    assert envelope == Envelope("o1", None, topic, cancel=True)


def test_invalid_request_with_usable_id_comes_back_as_rejection(handler: CoapRequests) -> None:
    topic = f"{BASE}/response/mine"
    envelope = handler.parse(
        encode({"id": "r2", "uri": "coap://meters/", "method": "BREW", "response_topic": topic})
    )
    assert (envelope.request_id, envelope.request, envelope.response_topic) == ("r2", None, topic)
    assert isinstance(envelope.rejection, MalformedRequest)
    assert "method must be one of GET" in str(envelope.rejection)


def test_forbidden_target_comes_back_as_rejection(handler: CoapRequests) -> None:
    envelope = handler.parse(encode({"id": "r3", "uri": "coap://192.0.2.1/"}))
    assert (envelope.request_id, envelope.request) == ("r3", None)
    assert isinstance(envelope.rejection, TargetNotAllowed)
    assert not envelope.observe


def test_bad_response_topic_is_rejected_on_the_id_topic(handler: CoapRequests) -> None:
    envelope = handler.parse(
        encode({"id": "r4", "uri": "coap://meters/", "response_topic": "elsewhere/r4"})
    )
    assert (envelope.request_id, envelope.response_topic) == ("r4", None)
    assert isinstance(envelope.rejection, MalformedRequest)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(b"{not json", "request is not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", "request must be a JSON object", id="not-object"),
        pytest.param(encode({"uri": "coap://meters/"}), "missing field id", id="no-id"),
        pytest.param(
            encode({"id": "a+b", "uri": "coap://meters/"}), "id must not contain '+'", id="id-plus"
        ),
    ],
)
def test_request_without_usable_id_raises(
    handler: CoapRequests, payload: bytes, message: str
) -> None:
    with pytest.raises(MalformedRequest, match=re.escape(message)) as caught:
        handler.parse(payload)
    assert caught.value.request_id is None


def test_swapped_settings_apply_to_the_next_parse(handler: CoapRequests) -> None:
    payload = encode({"id": "r5", "uri": "coap://meters/x"})
    before = handler.parse(payload).request
    handler.settings = make_settings(servers={"meters": {"host": "10.0.0.7", "port": 5700}})
    after = handler.parse(payload).request
    assert before is not None
    assert after is not None
    assert (before.host, before.port) == ("127.0.0.1", 5683)
    assert (after.host, after.port) == ("10.0.0.7", 5700)


def test_error_of_a_bridge_error_is_its_kind_and_message(
    handler: CoapRequests, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        answer = handler.error("r6", CoapTimeout("no response within 5 s"))
    assert answer == {
        "id": "r6",
        "ok": False,
        "error": {"kind": "timeout", "message": "no response within 5 s"},
    }
    assert caplog.records == []


def test_error_of_a_bug_is_internal_and_logged_with_traceback(
    handler: CoapRequests, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        answer = handler.error("r7", KeyError("secret detail"))
    assert answer["error"] == {
        "kind": "internal",
        "message": "internal error in the bridge; see its log",
    }
    [record] = caplog.records
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert getattr(record, "request_id", None) == "r7"
