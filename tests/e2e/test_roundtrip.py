"""Round trips through mosquitto, the daemon, the simulated L610 and a real CoAP server."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.coap_resources import LARGE_PAYLOAD as LARGE_BODY
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.mosquitto import TlsFiles
from tests.fixtures.stack_coap import HELLO_TEXT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stack(bridge_stack: BridgeStackFactory) -> BridgeStack:
    return bridge_stack()


def test_mqtt5_response_topic_and_correlation_data_are_echoed(stack: BridgeStack) -> None:
    response_topic = f"{stack.base}/response/app-7"
    correlation = b"\x00\xffcorr-1"

    answer = stack.mqtt.request(
        {"id": "m5-1", "method": "GET", "uri": "coap://lab/hello"},
        response_topic=response_topic,
        correlation=correlation,
    )

    assert answer.topic == response_topic
    assert answer.correlation == correlation
    assert answer.body["id"] == "m5-1"
    assert answer.body["ok"] is True
    assert answer.body["code"] == "2.05"
    assert answer.body["payload"] == HELLO_TEXT
    assert answer.body["payload_encoding"] == "text"
    assert answer.body["rtt_ms"] > 0


def test_mqtt311_round_trip_with_response_topic_field(stack: BridgeStack) -> None:
    client = stack.client(protocol="3.1.1")
    response_topic = f"{stack.base}/response/legacy/app-3"

    answer = client.request(
        {
            "id": "v3-1",
            "method": "PUT",
            "uri": "coap://lab/store",
            "content_format": "application/json",
            "payload": {"t": 21.5},
            "response_topic": response_topic,
        }
    )

    assert answer.topic == response_topic
    assert answer.correlation is None
    assert answer.body["code"] == "2.04"
    assert json.loads(stack.coap.store.content) == {"t": 21.5}
    again = client.request(
        {"id": "v3-2", "uri": "coap://lab/store", "response_topic": response_topic}
    )
    assert again.body["payload"] == {"t": 21.5}
    assert again.body["content_format"] == "application/json"


def test_without_routing_the_answer_goes_to_response_slash_id(stack: BridgeStack) -> None:
    answer = stack.mqtt.request({"id": "plain-1", "uri": "coap://lab/hello"})

    assert answer.topic == f"{stack.base}/response/plain-1"
    assert answer.body["payload"] == HELLO_TEXT


def test_blockwise_get_and_post_echo(stack: BridgeStack) -> None:
    large = stack.mqtt.request({"id": "big-1", "uri": "coap://lab/large"})
    echo = stack.mqtt.request(
        {
            "id": "echo-1",
            "method": "POST",
            "uri": "coap://lab/echo",
            "content_format": "application/cbor",
            "payload": {"a": [1, 2, 3]},
        }
    )

    assert large.body["code"] == "2.05"
    assert large.body["payload_encoding"] == "base64"
    assert base64.b64decode(large.body["payload"]) == LARGE_BODY
    assert echo.body["code"] == "2.04"
    assert echo.body["payload"] == {"a": [1, 2, 3]}


def test_command_line_clients_only(stack: BridgeStack) -> None:
    response_topic = f"{stack.base}/response/cli-1"
    broker = ["-h", stack.broker.host, "-p", str(stack.broker.port)]
    one_message = ["-C", "1", "-W", "15", "-q", "1"]  # exit after one, wait at most 15 s
    subscriber = subprocess.Popen(
        ["mosquitto_sub", *broker, "-i", "e2e-cli-sub", "-t", response_topic, *one_message],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Publish only once the broker has the subscription, or the answer is lost.
        deadline = time.monotonic() + 5
        while "Received SUBSCRIBE from e2e-cli-sub" not in stack.broker.log_tail(200):
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            time.sleep(0.05)
        request = json.dumps({"id": "cli-1", "method": "GET", "uri": "coap://lab/hello"})
        subprocess.run(
            ["mosquitto_pub", *broker, "-q", "1", "-t", f"{stack.base}/request", "-m", request],
            check=True,
            timeout=10,
        )
        output, errors = subscriber.communicate(timeout=15)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.communicate()

    assert subscriber.returncode == 0, errors
    answer = json.loads(output)
    assert answer["id"] == "cli-1"
    assert answer["ok"] is True
    assert answer["payload"] == HELLO_TEXT


def test_observe_then_cancel(stack: BridgeStack) -> None:
    topic = f"{stack.base}/response/obs-1"
    stack.mqtt.subscribe(topic)
    stack.mqtt.publish_raw(
        json.dumps({"id": "obs-1", "uri": "coap://lab/time", "observe": True, "timeout": 20})
    )
    notifications = stack.mqtt.collect(topic, 2, timeout=5)
    assert len(notifications) == 2
    assert all(n.body["ok"] and n.body["code"] == "2.05" for n in notifications)
    sequences = [n.body["observe"] for n in notifications]
    assert sequences[0] < sequences[1]
    assert stack.coap.observers == 1

    stack.mqtt.publish_raw(json.dumps({"id": "obs-1", "cancel": True}))

    deadline = time.monotonic() + 5
    while True:
        [last] = stack.mqtt.collect(topic, 1, timeout=max(0.0, deadline - time.monotonic()))
        if not last.body["ok"]:
            break
        assert "observe" in last.body
    assert last.body["error"]["kind"] == "cancelled"
    # The observation is deregistered at the server too (or forgotten after the next
    # notification is answered with RST).
    deadline = time.monotonic() + 3
    while stack.coap.observers and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.coap.observers == 0
    assert stack.mqtt.collect(topic, 1, timeout=1.5) == []


def test_requests_published_while_the_daemon_is_down_are_answered_after_start(
    stack: BridgeStack,
) -> None:
    # The daemon has connected once, so the broker holds its persistent session.
    assert stack.stop_daemon() == 0
    topic = f"{stack.base}/response/#"
    stack.mqtt.subscribe(topic)
    for index in range(3):
        stack.mqtt.publish_raw(
            json.dumps({"id": f"down-{index}", "uri": f"coap://lab/count?id=down-{index}"})
        )
    assert stack.mqtt.collect(topic, 1, timeout=0.5) == []

    stack.start_daemon()

    answers = stack.mqtt.collect(topic, 3, timeout=10)
    assert sorted(a.body["id"] for a in answers) == ["down-0", "down-1", "down-2"]
    assert all(a.body["ok"] and a.body["payload"] == "1" for a in answers)
    assert [stack.coap.hits(f"down-{index}") for index in range(3)] == [1, 1, 1]


def test_a_repeated_id_is_answered_from_cache_not_sent_twice(stack: BridgeStack) -> None:
    request = {"id": "dup-1", "uri": "coap://lab/count?id=dup-1"}

    first = stack.mqtt.request(request)
    second = stack.mqtt.request(request)

    assert first.body["payload"] == second.body["payload"] == "1"
    assert stack.coap.hits("dup-1") == 1


def test_health_is_retained_with_the_contract_fields(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack(overrides={"health_interval": 0.5})
    stack.mqtt.request({"id": "h-1", "uri": "coap://lab/hello"})
    stack.mqtt.request({"id": "h-2", "uri": "coap://192.0.2.1/x"})

    deadline = time.monotonic() + 5
    while True:
        health = stack.health()
        if health["counters"]["requests"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert health["state"] == "online"
    assert isinstance(health["uptime_s"], int | float)
    modem = health["modem"]
    for key in ("port", "model", "imei", "registered", "rssi_dbm", "ip", "resets"):
        assert key in modem, health
    assert modem["port"] == stack.pty_path
    assert modem["model"] == "L610"
    assert len(modem["imei"]) == 15
    assert modem["registered"] is True
    assert modem["resets"] == 0
    for key in ("instances_open", "in_flight", "observations"):
        assert key in health["coap"], health
    counters = health["counters"]
    for key in ("requests", "responses", "errors", "timeouts"):
        assert key in counters, health
    assert counters["requests"] >= 2
    assert counters["responses"] >= 1
    assert counters["errors"] >= 1


def test_round_trip_over_tls_with_a_password_file(
    bridge_stack: BridgeStackFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    password_file = tmp_path / "bridge.password"
    password_file.write_text("bridge-secret\n")
    password_file.chmod(0o600)
    stack = bridge_stack(
        broker_options={
            "tls": tls_files,
            "users": {"bridge": "bridge-secret", "app": "app-secret"},
        },
        client_options={"username": "app", "password": "app-secret"},
        overrides={
            "mqtt.username": "bridge",
            "mqtt.password_file": str(password_file),
            "mqtt.tls": {
                "enabled": True,
                "ca_file": str(tls_files.ca_file),
                "cert_file": str(tls_files.client_cert),
                "key_file": str(tls_files.client_key),
            },
        },
    )

    answer = stack.mqtt.request({"id": "tls-1", "uri": "coap://lab/hello"})

    assert answer.body["payload"] == HELLO_TEXT
    assert "bridge-secret" not in stack.daemon_log()


def test_daemon_on_mqtt311_serves_persistent_session_and_routing(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack(overrides={"mqtt.protocol": "3.1.1"})
    client = stack.client(protocol="3.1.1")
    response_topic = f"{stack.base}/response/v3"

    first = client.request(
        {"id": "d3-1", "uri": "coap://lab/hello", "response_topic": response_topic}
    )
    assert stack.stop_daemon() == 0
    pending = client.send(
        {"id": "d3-2", "uri": "coap://lab/count?id=d3-2", "response_topic": response_topic}
    )
    stack.start_daemon()
    second = pending(10)

    assert first.topic == response_topic
    assert first.body["payload"] == HELLO_TEXT
    assert second is not None
    assert second.body["payload"] == "1"
