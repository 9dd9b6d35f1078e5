"""Behaviours the README promises that no other test held: each test names its README
section, and checks it through the daemon process as a user would see it."""

from __future__ import annotations

import json
import signal

import pytest

from tests.e2e.test_cli import run_cli
from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(60)


def test_an_observation_ends_with_timeout_when_its_timeout_runs_out(
    bridge_stack: BridgeStackFactory,
) -> None:
    # README, "Observe": "... or until the request's `timeout` runs out (it ends with a
    # `timeout` error)". /time notifies every second.
    stack = bridge_stack()
    topic = f"{stack.base}/response/#"
    stack.mqtt.subscribe(topic)
    request = {"id": "obs-to", "uri": "coap://lab/time", "observe": True, "timeout": 3}
    stack.mqtt.publish_raw(json.dumps(request))

    answers = []
    while not answers or "error" not in answers[-1]:
        found = stack.mqtt.collect(topic, 1, timeout=10)
        assert found, f"the stream did not end: {answers}"
        answers.append(found[0].body)
    *notifications, last = answers
    assert notifications, "no notification before the end"
    assert all(n["ok"] is True and "observe" in n for n in notifications), notifications
    assert last["ok"] is False
    assert last["error"]["kind"] == "timeout", last
    # Nothing after the end: a sentinel (no `uri`) is answered after anything earlier.
    stack.mqtt.publish_raw(json.dumps({"id": "obs-to-sentinel", "method": "GET"}))
    sentinel = stack.mqtt.collect(topic, 1, timeout=10)
    assert [a.body["id"] for a in sentinel] == ["obs-to-sentinel"]


def test_an_observation_the_server_does_not_keep_ends_with_its_answer(
    bridge_stack: BridgeStackFactory,
) -> None:
    # README, "Observe": "... or the server stops it". /hello is not observable: the
    # server answers without Observe, and that answer is the whole stream.
    stack = bridge_stack()
    topic = f"{stack.base}/response/#"
    stack.mqtt.subscribe(topic)
    request = {"id": "obs-once", "uri": "coap://lab/hello", "observe": True, "timeout": 20}
    stack.mqtt.publish_raw(json.dumps(request))

    first = stack.mqtt.collect(topic, 1, timeout=10)
    assert [a.body["id"] for a in first] == ["obs-once"]
    assert first[0].body["ok"] is True
    assert "observe" not in first[0].body
    # The stream has ended (no observation left to run into its 20 s timeout), and
    # a sentinel is the next answer.
    eventually(lambda: stack.health()["coap"]["observations"] == 0, 10, "no observation left")
    stack.mqtt.publish_raw(json.dumps({"id": "obs-once-sentinel", "method": "GET"}))
    sentinel = stack.mqtt.collect(topic, 1, timeout=10)
    assert [a.body["id"] for a in sentinel] == ["obs-once-sentinel"]


def test_request_cli_exits_2_when_nothing_comes_back(bridge_stack: BridgeStackFactory) -> None:
    # README, "Using it": "exit status ... 2 when nothing came back". No daemon runs.
    stack = bridge_stack(start=False)

    result = run_cli("request", "-c", str(stack.config_path), "-W", "1", "coap://lab/hello")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip() == "no answer within 1 s"


def test_request_cli_observe_prints_each_notification_until_the_stream_ends(
    bridge_stack: BridgeStackFactory,
) -> None:
    # README, "Using it": `request --observe` prints each answer as a JSON line; the
    # stream ends with its timeout error, so the exit status is 1.
    stack = bridge_stack()

    result = run_cli(
        "request", "-c", str(stack.config_path), "--observe", "--timeout", "3", "-W", "10",
        "coap://lab/time",
    )  # fmt: skip

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(lines) >= 2, lines
    *notifications, last = lines
    assert [n["observe"] for n in notifications] == sorted(n["observe"] for n in notifications)
    assert all(n["ok"] is True for n in notifications), notifications
    assert last["error"]["kind"] == "timeout", last


def test_dedupe_window_0_serves_a_repeated_id_again(bridge_stack: BridgeStackFactory) -> None:
    # README, "Configuration": `dedupe_window` ... "(0 = off)": the same request id a
    # second time reaches the CoAP server a second time.
    stack = bridge_stack(overrides={"dedupe_window": 0})
    request = {"id": "again", "uri": "coap://lab/count?id=again"}

    first = stack.mqtt.request(request)
    second = stack.mqtt.request(request)

    assert (first.body["ok"], second.body["ok"]) == (True, True)
    assert stack.coap.hits("again") == 2
    assert stack.health()["counters"]["dedupe_hits"] == 0


def test_sigterm_closes_the_modems_instances(bridge_stack: BridgeStackFactory) -> None:
    # README, "Operations", Stop: the modem is left as found, no GTCOAP instance open.
    stack = bridge_stack()
    assert stack.mqtt.request({"id": "open-one", "uri": "coap://lab/hello"}).body["ok"]
    assert stack.sim.stats()["instances_open"] >= 1

    assert stack.stop_daemon(signal.SIGTERM) == 0

    assert stack.sim.stats()["instances_open"] == 0


def test_json_logs_carry_request_id_and_coap_id(bridge_stack: BridgeStackFactory) -> None:
    # README, "Operations", Logs: "with `request_id`, `coap_id` and `target` where they
    # apply; `--log-format json` for a log shipper".
    stack = bridge_stack(start=False, overrides={"logging.level": "debug"})
    stack.start_daemon(args=("--log-format", "json"))
    assert stack.mqtt.request({"id": "logged-1", "uri": "coap://lab/hello"}).body["ok"]

    def records() -> list[dict[str, object]]:
        return [json.loads(line) for line in stack.daemon_log().splitlines() if line.strip()]

    eventually(
        lambda: any(r.get("request_id") == "logged-1" for r in records()),
        5,
        "a log line naming request_id logged-1",
    )
    # The instance it went through, as a field of its own (not only in the text).
    driver = "bridge.modem.l610.driver"
    opened = [r for r in records() if r.get("logger") == driver and "coap_id" in r]
    assert opened, records()[-20:]
    assert all(isinstance(r["coap_id"], int) for r in opened), opened


def test_a_datagram_matching_no_request_is_published_on_unsolicited(
    bridge_stack: BridgeStackFactory,
) -> None:
    # docs/mqtt-api.md, topics: `<base>/unsolicited` carries "decoded CoAP datagrams that
    # matched no request". A request to the silent peer opens an instance to it; the
    # peer then sends from its port a NON 2.05 with a token nobody asked for.
    stack = bridge_stack()
    stack.mqtt.subscribe(f"{stack.base}/unsolicited")
    answer = stack.mqtt.request({"id": "to-silent", "uri": "coap://silent/x", "timeout": 1})
    assert answer.body["error"]["kind"] == "timeout"
    (instance, *_) = stack.silent.senders
    # Version 1, NON, token length 2; code 2.05; message id 0x1234; token abcd; "hi".
    stack.silent.send_to(instance, bytes([0x52, 0x45, 0x12, 0x34, 0xAB, 0xCD, 0xFF]) + b"hi")

    [unsolicited] = stack.mqtt.collect(f"{stack.base}/unsolicited", 1, timeout=10)
    assert not unsolicited.retain
    body = unsolicited.body
    assert (body["type"], body["mid"], body["token"]) == ("NON", 0x1234, "abcd"), body
    assert body["code"] == "2.05", body
    assert body["payload"] == "hi", body
