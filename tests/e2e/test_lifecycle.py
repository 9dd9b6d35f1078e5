"""Service lifecycle of the daemon process: SIGHUP reload, SIGTERM stop, sd_notify."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.stack_coap import HELLO_TEXT
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(60)


def test_sighup_with_a_valid_config_applies_it(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()
    before = stack.mqtt.request({"id": "hup-0", "uri": "coap://newlab/hello"})
    assert before.body["error"]["kind"] == "forbidden_target"

    stack.reload({"coap.servers.newlab": {"host": "127.0.0.1", "port": stack.coap.port}})
    stack.wait_log("config reloaded")

    after = stack.mqtt.request({"id": "hup-1", "uri": "coap://newlab/hello"})
    assert after.body["ok"] is True
    assert after.body["payload"] == HELLO_TEXT
    config = stack.health()["config"]
    assert config["reloads"] == 1
    assert config["error"] is None


def test_sighup_with_an_invalid_config_keeps_the_old_one(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()

    stack.reload({"coap.max_in_flight": 0, "coap.servers.lab": None})
    log = stack.wait_log("reload refused")

    assert "coap.max_in_flight" in log
    assert stack.process is not None
    assert stack.process.poll() is None
    # Still serving on the old config: the alias the new file dropped still works.
    answer = stack.mqtt.request({"id": "bad-hup", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True
    config = eventually(
        lambda: (c := stack.health()["config"])["error"] is not None and c,
        5,
        "health reporting the config error",
    )
    assert "coap.max_in_flight" in config["error"]
    assert config["reloads"] == 0

    # A broken YAML file is refused the same way, and a fixed one clears the error.
    stack.reload(text="modem: [\n")
    stack.wait_log("YAML syntax error")
    stack.reload({"coap.max_in_flight": 8})
    stack.wait_log("config reloaded")
    eventually(
        lambda: stack.health()["config"]["error"] is None, 5, "health clearing the config error"
    )


def test_sigterm_with_requests_in_flight(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()
    topic = f"{stack.base}/response/#"
    stack.mqtt.subscribe(topic)
    ids = [f"term-{index}" for index in range(4)]
    sent_before = stack.sim.stats()["datagrams_out"]
    for request_id in ids:
        stack.mqtt.publish_raw(
            json.dumps({"id": request_id, "uri": "coap://lab/slow?1.5", "timeout": 10})
        )
    # All of them are with the CoAP server (an unthrottled link, no latency).
    eventually(
        lambda: stack.sim.stats()["datagrams_out"] - sent_before >= len(ids),
        5,
        "the four requests sent",
    )

    signalled = time.monotonic()
    status = stack.stop_daemon(signal.SIGTERM)

    assert status == 0, stack.daemon_log()[-3000:]
    assert time.monotonic() - signalled > 0.5, "the daemon did not wait for in-flight requests"
    answers = {a.body["id"]: a.body for a in stack.mqtt.collect(topic, len(ids), timeout=2)}
    assert sorted(answers) == ids
    # In flight at the signal, they had the shutdown grace (20 s) for their 1.5 s.
    for body in answers.values():
        assert body["ok"] is True, body
        assert body["code"] == "2.05", body
    reader = stack.client()
    [retained] = reader.collect(f"{stack.base}/status", 1, timeout=5)
    assert retained.retain
    assert retained.body == {"state": "offline"}


def test_requests_waiting_at_sigterm_get_one_answer_each(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack(overrides={"coap.max_in_flight": 1})
    topic = f"{stack.base}/response/#"
    stack.mqtt.subscribe(topic)
    ids = [f"queued-{index}" for index in range(3)]
    for request_id in ids:
        uri = f"coap://lab/count?id={request_id}"
        stack.mqtt.publish_raw(json.dumps({"id": request_id, "uri": uri}))
        if request_id == ids[0]:
            stack.mqtt.publish_raw(json.dumps({"id": "queued-slow", "uri": "coap://lab/slow?1"}))
    # queued-0 answered, queued-slow in flight (its CON out after queued-0's), the rest
    # waiting for the one slot.
    first = stack.mqtt.collect(topic, 1, timeout=10)
    assert [a.body["id"] for a in first] == ["queued-0"]
    eventually(lambda: stack.sim.stats()["datagrams_out"] >= 2, 5, "queued-slow sent")

    assert stack.stop_daemon(signal.SIGTERM) == 0
    stack.start_daemon()

    # Exactly one answer each: served (before the stop, or redelivered after the
    # restart) or, if the stop caught it being served, `cancelled`. None sent twice.
    rest = stack.mqtt.collect(topic, 3, timeout=10)
    answers = {a.body["id"]: a.body for a in [*first, *rest]}
    assert sorted(answers) == sorted([*ids, "queued-slow"])
    # A sentinel (no `uri`, answered at once) comes after any repeat the daemon sent.
    stack.mqtt.publish_raw(json.dumps({"id": "sentinel", "method": "GET"}))
    [after] = stack.mqtt.collect(topic, 1, timeout=10)
    assert after.body["id"] == "sentinel", after.body
    assert answers["queued-0"]["ok"] is True
    assert answers["queued-slow"]["ok"] is True
    for request_id in ids:
        body = answers[request_id]
        if body["ok"]:
            assert stack.coap.hits(request_id) == 1
        else:
            assert body["error"]["kind"] == "cancelled", body
            assert stack.coap.hits(request_id) <= 1


@contextlib.contextmanager
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short path: unix socket paths are limited to ~107 bytes.
    directory = tempfile.mkdtemp(prefix="e2e-notify-")
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def read_notifications(sock: socket.socket, until: str, timeout: float = 10.0) -> list[str]:
    """Datagrams received until one contains the line `until` (AssertionError if none)."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no {until!r} notification; got {messages}") from None
        messages.append(message)
        if until in message.splitlines():
            return messages


def test_sd_notify_messages(bridge_stack: BridgeStackFactory) -> None:
    with notify_socket() as (sock, path):
        stack = bridge_stack(start=False)
        stack.start_daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})

        # READY=1 as soon as the daemon runs; STATUS then says what it waits for.
        started = read_notifications(sock, "READY=1")
        assert not any(m.startswith("STATUS=serving") for m in started), started
        later = read_notifications(sock, "WATCHDOG=1", timeout=1)
        while not any(m.startswith("STATUS=serving") for m in later):
            later += read_notifications(sock, "WATCHDOG=1", timeout=1)
        statuses = [m for m in later if m.startswith("STATUS=")]
        assert any("modem" in m for m in statuses), later
        pings = read_notifications(sock, "WATCHDOG=1", timeout=1)
        assert read_notifications(sock, "WATCHDOG=1", timeout=1)  # repeated, every 0.1 s

        stack.reload({"coap.default_timeout": 7})
        reloading = read_notifications(sock, "READY=1")
        [reload_message] = [m for m in reloading if m.startswith("RELOADING=1")]
        assert "MONOTONIC_USEC=" in reload_message
        assert reloading.index(reload_message) < len(reloading) - 1

        # One SIGTERM (a second one could land after the handlers are gone); the
        # notifications wait in the socket.
        assert stack.stop_daemon(signal.SIGTERM) == 0
        read_notifications(sock, "STOPPING=1")
        assert pings


def test_no_watchdog_pings_without_watchdog_usec(bridge_stack: BridgeStackFactory) -> None:
    with notify_socket() as (sock, path):
        stack = bridge_stack(start=False)
        stack.start_daemon(env={"NOTIFY_SOCKET": path})

        # Its whole life, from start to stop, serving in between.
        messages = read_notifications(sock, "READY=1")
        sock.settimeout(10)
        while not any(
            line.startswith("STATUS=serving") for m in messages for line in m.splitlines()
        ):
            messages.append(sock.recv(4096).decode())
        assert stack.stop_daemon(signal.SIGTERM) == 0
        messages += read_notifications(sock, "STOPPING=1")

        assert not any("WATCHDOG=1" in m for m in messages), messages


def test_killed_daemon_leaves_the_last_will_and_serves_after_restart(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack()

    stack.kill_daemon()

    reader = stack.client()
    [status] = reader.collect(f"{stack.base}/status", 1, timeout=5)
    assert status.body == {"state": "offline"}  # the Last Will, published by the broker
    stack.start_daemon()
    answer = stack.mqtt.request({"id": "kill-1", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True
