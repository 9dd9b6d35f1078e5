"""The service's pure rules: which reloads restart the layers, and the MQTT client's settings."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge.config import MqttProtocol, Settings
from bridge.errors import ConfigError
from bridge.layer_settings import client_settings, needs_restart
from bridge.ops.logs import redact
from tests.fixtures.mosquitto import TlsFiles


def settings(tmp_path: Path, **sections: Any) -> Settings:
    data: dict[str, Any] = {"gateway_id": "gw1", "modem": {"port": "/dev/ttyUSB2"}}
    data.update(sections)
    return Settings.model_validate(data, context={"base_dir": tmp_path})


@pytest.mark.parametrize(
    "coap",
    [
        pytest.param({"servers": {"meter": {"host": "10.0.0.7"}}}, id="servers"),
        pytest.param({"allow_hosts": ["example.org"]}, id="allow_hosts"),
        pytest.param({"default_timeout": 10.0}, id="default_timeout"),
        pytest.param({"max_timeout": 120.0}, id="max_timeout"),
        pytest.param({"max_request_payload": 1024}, id="max_request_payload"),
    ],
)
def test_coap_target_rules_and_timeouts_apply_live(tmp_path: Path, coap: dict[str, Any]) -> None:
    assert not needs_restart(settings(tmp_path), settings(tmp_path, coap=coap))


def test_logging_applies_live(tmp_path: Path) -> None:
    new = settings(tmp_path, logging={"level": "debug", "format": "json"})
    assert not needs_restart(settings(tmp_path), new)


def test_identical_settings_need_no_restart(tmp_path: Path) -> None:
    assert not needs_restart(settings(tmp_path), settings(tmp_path))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"coap": {"max_in_flight": 8}}, id="coap.max_in_flight"),
        pytest.param({"mqtt": {"port": 1884}}, id="mqtt.port"),
        pytest.param({"mqtt": {"protocol": "3.1.1"}}, id="mqtt.protocol"),
        pytest.param({"modem": {"port": "/dev/ttyUSB3"}}, id="modem.port"),
        pytest.param({"gateway_id": "gw2"}, id="gateway_id"),
        pytest.param({"shutdown_grace": 5.0}, id="shutdown_grace"),
        pytest.param({"dedupe_window": 60.0}, id="dedupe_window"),
    ],
)
def test_any_other_change_restarts_the_layers(tmp_path: Path, changes: dict[str, Any]) -> None:
    assert needs_restart(settings(tmp_path), settings(tmp_path, **changes))


def test_a_live_change_beside_a_restart_change_still_restarts(tmp_path: Path) -> None:
    new = settings(tmp_path, coap={"default_timeout": 10.0, "max_in_flight": 8})
    assert needs_restart(settings(tmp_path), new)


def test_client_settings_carry_the_mqtt_section(tmp_path: Path) -> None:
    mqtt = {"host": "broker.lan", "port": 8883, "protocol": "3.1.1", "username": "gw"}
    client = client_settings(settings(tmp_path, mqtt=mqtt, coap={"max_in_flight": 100}))
    assert (client.host, client.port, client.username) == ("broker.lan", 8883, "gw")
    assert client.protocol is MqttProtocol.V311
    assert (client.client_id, client.base_topic) == ("mqtt-coap-bridge-gw1", "coap-bridge/gw1")
    assert (client.keepalive, client.session_expiry, client.max_queued) == (30, 86400, 1000)
    assert client.password == ""
    assert client.tls is None
    # Twice the in-flight limit, so that the broker may hand over a queue of requests.
    assert client.receive_maximum == 200


@pytest.mark.parametrize(
    ("max_in_flight", "expected"), [(1, 20), (10, 20), (11, 22), (40000, 65535)]
)
def test_receive_maximum_stays_within_mqtt_bounds(
    tmp_path: Path, max_in_flight: int, expected: int
) -> None:
    client = client_settings(settings(tmp_path, coap={"max_in_flight": max_in_flight}))
    assert client.receive_maximum == expected


def test_tls_reaches_the_client_only_when_enabled(tmp_path: Path, tls_files: TlsFiles) -> None:
    shutil.copy(tls_files.ca_file, tmp_path / "ca.pem")
    off = settings(tmp_path, mqtt={"tls": {"ca_file": "ca.pem"}})
    assert client_settings(off).tls is None
    on = settings(tmp_path, mqtt={"tls": {"enabled": True, "ca_file": "ca.pem"}})
    tls = client_settings(on).tls
    assert tls is not None
    assert tls.enabled
    assert tls.ca_file == str(tmp_path / "ca.pem")


def test_password_is_read_and_registered_as_a_secret(tmp_path: Path) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    client = client_settings(settings(tmp_path, mqtt={"password_file": "password"}))
    assert client.password == password
    assert redact(f"CONNECT password={password}") == "CONNECT password=***"


def test_password_file_that_became_readable_by_others_is_refused(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("pw\n")
    password_file.chmod(0o600)
    loaded = settings(tmp_path, mqtt={"password_file": "password"})
    password_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        client_settings(loaded)
