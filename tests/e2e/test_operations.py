"""Operations of the daemon process seen from outside: reloads, sd_notify, stop, secrets."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.mosquitto import MosquittoFactory, TlsFiles
from tests.fixtures.simulator import REPO_ROOT
from tests.fixtures.wait import eventually
from tests.ops.notify import NotifySocket

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def test_check_config_reports_a_control_character_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"modem:\n  port: /dev/ttyUSB2\n  apn: inter\x01net\n")
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "line 3, column 13: control character U+0001" in result.stderr


def test_reload_with_a_control_character_is_refused_and_ends(
    bridge_stack: BridgeStackFactory, notify: NotifySocket
) -> None:
    stack = bridge_stack(daemon_env=notify.env)
    notify.wait_for(lambda m: m == "READY=1")
    text = stack.config_path.read_text().replace("info", "in\x00fo", 1)
    notify.messages.clear()
    stack.reload(text=text)
    stack.wait_log("reload refused")
    notify.wait_for(lambda m: m.startswith("RELOADING=1"))
    notify.wait_for(lambda m: m == "READY=1")
    eventually(
        lambda: "control character U+0000" in (stack.health()["config"]["error"] or ""),
        10,
        "health.config.error naming the control character",
    )
    assert stack.process is not None
    assert stack.process.poll() is None


def test_reload_pointing_at_a_bad_ca_file_keeps_the_running_config(
    bridge_stack: BridgeStackFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    tls = {
        "enabled": True,
        "ca_file": str(tls_files.ca_file),
        "cert_file": str(tls_files.client_cert),
        "key_file": str(tls_files.client_key),
    }
    stack = bridge_stack(broker_options={"tls": tls_files}, overrides={"mqtt.tls": tls})
    not_a_cert = tmp_path / "not-a-cert.pem"
    not_a_cert.write_text("not a certificate\n")

    stack.reload({"mqtt.tls.ca_file": str(not_a_cert)})
    log = stack.wait_log("reload refused")

    assert "mqtt.tls.ca_file" in log
    assert "holds no PEM certificate" in log
    answer = stack.mqtt.request({"id": "after-bad-tls", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True
    assert stack.process is not None
    assert stack.process.poll() is None


def _request_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "request", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_request_with_a_wrong_password_says_not_authorized(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(users={"app": "app-secret"})
    password_file = tmp_path / "password"
    password_file.write_text("wrong\n")
    started = time.monotonic()
    result = _request_cli(
        "coap://lab/hello",
        *("-H", broker.host, "-p", str(broker.port), "-u", "app", "-P", str(password_file)),
    )
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 8
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "refused the connection" in line
    assert "Not authorized" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("-P", "/nonexistent/password"), "cannot read the password file /nonexistent/password"),
        (("-j", "-d", "{bad"), "the payload (-d) is not valid JSON (-j)"),
    ],
)
def test_request_with_unusable_input_is_one_line(
    mosquitto_factory: MosquittoFactory, args: tuple[str, ...], expected: str
) -> None:
    broker = mosquitto_factory()
    result = _request_cli("coap://lab/hello", "-H", broker.host, "-p", str(broker.port), *args)
    assert result.returncode == 4, result.stderr
    [line] = result.stderr.splitlines()
    assert expected in line


def test_a_good_reload_clears_the_refusal_and_a_stop_leaves_health_offline(
    bridge_stack: BridgeStackFactory, notify: NotifySocket
) -> None:
    stack = bridge_stack(daemon_env=notify.env)
    serving = notify.wait_for(lambda m: m.startswith("STATUS=serving"))
    eventually(lambda: stack.health()["state"] == "online", 10, "health online")

    stack.reload({"coap.max_in_flight": 0})
    stack.wait_log("reload refused")
    eventually(
        lambda: notify.statuses()[-1].startswith("reload refused: "), 10, "reload refused STATUS"
    )
    stack.reload({"coap.max_in_flight": None, "coap.default_timeout": 6})  # applied live
    stack.wait_log("applied live")
    eventually(lambda: stack.health()["config"]["error"] is None, 10, "config.error cleared")
    eventually(lambda: "STATUS=" + notify.statuses()[-1] == serving, 10, "serving STATUS")

    assert stack.stop_daemon() == 0
    health = stack.health()
    assert health["state"] == "offline", health


def _unit_seconds(key: str) -> float:
    unit = REPO_ROOT / "systemd" / "mqtt-coap-bridge.service"
    [value] = [
        line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(key)
    ]
    return float(value)


def test_ready_comes_at_start_while_the_modem_is_missing(
    bridge_stack: BridgeStackFactory, notify: NotifySocket, tmp_path: Path
) -> None:
    stack = bridge_stack(start=False, overrides={"modem.port": str(tmp_path / "no-modem")})
    started = time.monotonic()
    stack.start_daemon(wait=False, env=notify.env)

    notify.wait_for(lambda m: m == "READY=1", timeout=_unit_seconds("TimeoutStartSec") / 3)
    assert time.monotonic() - started < _unit_seconds("TimeoutStartSec") / 3
    eventually(
        lambda: any(s.startswith("waiting for the modem") for s in notify.statuses()),
        10,
        "STATUS naming the modem wait",
    )
    # Not serving: nothing says online, and the broker is not even connected to until
    # a modem is up (README, "Readiness and start-up waits").
    status_topic = f"{stack.base}/status"
    assert stack.watcher.take(lambda m: m.topic == status_topic, 1.0) is None
    eventually(lambda: "modem not usable" in stack.daemon_log(), 10, "a bring-up attempt")
    assert "connecting to MQTT broker" not in stack.daemon_log()


def test_ready_at_start_then_serving_once_the_broker_comes(
    bridge_stack: BridgeStackFactory, notify: NotifySocket
) -> None:
    stack = bridge_stack(start=False)
    stack.broker.stop()
    stack.start_daemon(wait=False, env=notify.env)

    notify.wait_for(lambda m: m == "READY=1", timeout=_unit_seconds("TimeoutStartSec") / 3)
    eventually(
        lambda: any(s.startswith("connecting to MQTT broker") for s in notify.statuses()),
        10,
        "STATUS naming the broker wait",
    )
    assert not any(s.startswith("serving") for s in notify.statuses())

    stack.broker.start()
    eventually(
        lambda: any(s.startswith("serving") for s in notify.statuses()),
        40,
        "serving STATUS",
    )
    # The health published on connect may predate the subscription's grant: poll.
    eventually(lambda: stack.health()["state"] == "online", 10, "health online")
    answer = stack.mqtt.request({"id": "after-broker", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True


def test_a_rotated_password_is_used_after_sighup(
    bridge_stack: BridgeStackFactory, tmp_path: Path
) -> None:
    password_file = tmp_path / "bridge.password"
    password_file.write_text("old-secret-1\n")
    password_file.chmod(0o600)
    app = {"username": "app", "password": "app-secret"}
    stack = bridge_stack(
        broker_options={"users": {"bridge": "old-secret-1", "app": "app-secret"}},
        client_options=app,
        overrides={"mqtt.username": "bridge", "mqtt.password_file": str(password_file)},
    )

    stack.broker.reconfigure(users={"bridge": "new-secret-2", "app": "app-secret"})
    password_file.write_text("new-secret-2\n")
    stack.reload()
    stack.wait_log("MQTT credentials changed")
    stack.broker.restart()  # the next connect must use the new password

    fresh = stack.client()
    answer = fresh.request({"id": "after-rotation", "uri": "coap://lab/hello"}, timeout=20)
    assert answer.body["ok"] is True
    log = stack.daemon_log()
    assert "new-secret-2" not in log
    assert "old-secret-1" not in log
