"""Every error kind of the MQTT contract, produced end to end through the daemon.

`internal` is deliberately not produced: it is the answer to a bug in the bridge, and
there is no request that reaches it on purpose.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(60)


def assert_error(answer: Any, request_id: str | None, kind: str) -> dict[str, Any]:
    body: dict[str, Any] = answer.body
    assert body["id"] == request_id, body
    assert body["ok"] is False, body
    assert body["error"]["kind"] == kind, body
    assert body["error"]["message"], body
    return body


@pytest.fixture
def stack(bridge_stack: BridgeStackFactory) -> BridgeStack:
    return bridge_stack(overrides={"coap.max_request_payload": 256})


def test_bad_json_is_answered_on_response_invalid_with_id_null(stack: BridgeStack) -> None:
    stack.mqtt.subscribe(f"{stack.base}/response/invalid")
    stack.mqtt.publish_raw(b'{"id": "j1", "method": ')

    [answer] = stack.mqtt.collect(f"{stack.base}/response/invalid", 1)

    body = assert_error(answer, None, "invalid_request")
    assert "JSON" in body["error"]["message"]


def test_request_without_usable_id_is_answered_on_response_invalid(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"method": "GET", "uri": "coap://lab/hello"})

    assert answer.topic == f"{stack.base}/response/invalid"
    assert_error(answer, None, "invalid_request")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"method": "GET"}, "uri"),
        ({"method": "GET", "uri": "http://lab/hello"}, "coap"),
        ({"method": "GET", "uri": "not a uri at all"}, "uri"),
        ({"method": "BREW", "uri": "coap://lab/hello"}, "method"),
        ({"method": "PUT", "uri": "coap://lab/store", "payload": "x" * 300}, "max_request_payload"),
    ],
    ids=["missing-uri", "bad-scheme", "bad-uri", "unknown-method", "payload-too-large"],
)
def test_invalid_request_fields(stack: BridgeStack, fields: dict[str, Any], words: str) -> None:
    answer = stack.mqtt.request({"id": "inv-1", **fields})

    assert answer.topic == f"{stack.base}/response/inv-1"
    body = assert_error(answer, "inv-1", "invalid_request")
    assert words in body["error"]["message"].lower()


def test_oversized_request_message_is_answered_on_response_invalid(stack: BridgeStack) -> None:
    # Above 2 x max_request_payload + 64 KiB the message is refused before parsing.
    oversized = json.dumps({"id": "huge-1", "uri": "coap://lab/x", "payload": "x" * 70_000})

    answer = stack.mqtt.request(oversized)

    assert answer.topic == f"{stack.base}/response/invalid"
    body = assert_error(answer, None, "invalid_request")
    assert "bytes" in body["error"]["message"]


def test_response_topic_outside_the_prefix_is_refused(stack: BridgeStack) -> None:
    stack.mqtt.subscribe("elsewhere/#")
    answer = stack.mqtt.request(
        {"id": "rt-1", "uri": "coap://lab/hello", "response_topic": "elsewhere/x"},
        response_topic=f"{stack.base}/response/rt-1",
    )

    body = assert_error(answer, "rt-1", "invalid_request")
    assert "response_topic" in body["error"]["message"]
    assert stack.mqtt.collect("elsewhere/#", 1, timeout=0.3) == []


def test_host_outside_servers_and_allow_list_is_forbidden(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"id": "fb-1", "uri": "coap://192.0.2.7/hello"})

    body = assert_error(answer, "fb-1", "forbidden_target")
    assert "192.0.2.7" in body["error"]["message"]


def test_silent_server_gives_timeout(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"id": "to-1", "uri": "coap://silent/x", "timeout": 1})

    assert_error(answer, "to-1", "timeout")
    assert stack.silent.received >= 1


def test_rst_gives_reset(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"id": "rst-1", "uri": "coap://rst/x", "timeout": 3})

    assert_error(answer, "rst-1", "reset")
    assert stack.rst.received >= 1


def test_coap_404_is_a_response_not_an_error(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"id": "nf-1", "uri": "coap://lab/no/such/path"})

    assert answer.body["ok"] is False
    assert answer.body["code"] == "4.04"
    assert answer.body["code_name"] == "Not Found"
    assert "error" not in answer.body


def test_unplugged_modem_gives_modem_unavailable(stack: BridgeStack) -> None:
    stack.sim.unplug(3)
    eventually(lambda: not stack.health()["modem"]["ready"], 5, "the daemon saw the port gone")

    answer = stack.mqtt.request({"id": "mu-1", "uri": "coap://lab/hello", "timeout": 2})

    assert_error(answer, "mu-1", "modem_unavailable")


def test_no_free_instance_gives_modem_unavailable(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack(overrides={"modem.max_instances": 1})
    slow = stack.mqtt.send({"id": "busy-1", "uri": "coap://lab/slow?3", "timeout": 10})
    # The only instance is now held by the slow exchange with lab.
    eventually(lambda: stack.sim.stats()["datagrams_out"] >= 1, 5, "the slow request sent")

    answer = stack.mqtt.request({"id": "mu-2", "uri": "coap://rst/x", "timeout": 1})

    body = assert_error(answer, "mu-2", "modem_unavailable")
    assert "instance" in body["error"]["message"]
    slow_answer = slow(10)
    assert slow_answer is not None
    assert slow_answer.body["code"] == "2.05"


def test_modem_error_for_an_unresolvable_host(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack(overrides={"coap.allow_hosts": ["no-such-host.invalid"]})

    answer = stack.mqtt.request(
        {"id": "me-1", "uri": "coap://no-such-host.invalid/x", "timeout": 3}
    )

    body = assert_error(answer, "me-1", "modem_error")
    assert "GTCOAPOPEN" in body["error"]["message"]


def test_cancel_request_ends_an_observation_with_cancelled(stack: BridgeStack) -> None:
    first = stack.mqtt.send({"id": "ob-c", "uri": "coap://lab/time", "observe": True})
    assert first(5) is not None

    stack.mqtt.publish_raw(b'{"id": "ob-c", "cancel": true}')

    deadline = time.monotonic() + 5
    while True:
        answer = stack.mqtt.take(lambda m: m.topic == f"{stack.base}/response/ob-c", 5)
        assert answer is not None, "the observation did not end"
        if "error" in answer.body:
            break
        assert time.monotonic() < deadline
    assert_error(answer, "ob-c", "cancelled")


def test_sigterm_answers_a_running_observation_cancelled(stack: BridgeStack) -> None:
    first = stack.mqtt.send({"id": "ob-t", "uri": "coap://lab/time", "observe": True, "timeout": 4})
    assert first(5) is not None

    stack.send_signal(signal.SIGTERM)

    answers = stack.mqtt.collect(f"{stack.base}/response/ob-t", 10, timeout=6)
    assert stack.stop_daemon() == 0
    assert answers, "no final answer"
    assert_error(answers[-1], "ob-t", "cancelled")
