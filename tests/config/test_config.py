"""Config loading: the documented shapes load, every mistake names its key and line."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pydantic
import pytest

from bridge.config import (
    MqttProtocol,
    Settings,
    describe,
    load_config,
    load_password,
)
from bridge.errors import ConfigError
from tests.fixtures.mosquitto import TlsFiles

REPO = Path(__file__).resolve().parents[2]
# The config shape the contract promises, verbatim: it must keep loading as it is.
SHARED_EXAMPLE = Path(__file__).parent / "contract-example.yaml"
MINIMAL = "modem:\n  port: /dev/ttyUSB2\n"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    return caught.value.problems


def assert_documented_defaults(settings: Settings) -> None:
    assert settings.gateway_id == "gw-0001"
    assert settings.modem.port == "/dev/ttyUSB2"
    assert settings.modem.baudrate == 115200
    assert settings.modem.apn == ""
    assert settings.modem.command_timeout == 5
    assert settings.modem.max_instances == 4
    assert settings.modem.instance_idle_close == 300
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.protocol) == ("localhost", 1883, MqttProtocol.V5)
    assert mqtt.client_id == "mqtt-coap-bridge-gw-0001"
    assert mqtt.username == ""
    assert mqtt.password_file == ""
    assert not mqtt.tls.enabled
    assert mqtt.base_topic == "coap-bridge/gw-0001"
    assert (mqtt.keepalive, mqtt.session_expiry) == (30, 86400)
    assert (mqtt.shared_group, mqtt.pool_topic) == ("", "coap-bridge/pool")
    coap = settings.coap
    assert set(coap.servers) == {"meters"}
    assert (coap.servers["meters"].host, coap.servers["meters"].port) == ("127.0.0.1", 5683)
    assert coap.allow_hosts == ()
    assert (coap.default_timeout, coap.max_timeout) == (30, 300)
    assert (coap.max_in_flight, coap.max_request_payload) == (64, 65536)
    assert (settings.dedupe_window, settings.health_interval) == (600, 60)
    assert (settings.logging.level, settings.logging.format) == ("info", "text")


def test_shared_example_loads_with_documented_values() -> None:
    settings = load_config(SHARED_EXAMPLE)
    assert_documented_defaults(settings)
    assert settings.modems == (settings.modem,)


def test_repo_example_loads_and_matches_shared_example() -> None:
    settings = load_config(REPO / "config" / "config.example.yaml")
    assert_documented_defaults(settings)
    assert settings == load_config(SHARED_EXAMPLE)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("test-*.yaml")))
def test_repo_test_configs_load(name: str) -> None:
    assert describe(load_config(REPO / "config" / name)).startswith("config OK: ")


def test_describe_is_one_line_summary() -> None:
    assert describe(load_config(SHARED_EXAMPLE)) == (
        "config OK: gateway gw-0001, modem /dev/ttyUSB2, broker localhost:1883 (MQTT 5), "
        "base topic coap-bridge/gw-0001, 1 server"
    )


def test_minimal_config_derives_names_from_host_name(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL))
    host = socket.gethostname()
    assert settings.gateway_id == host
    assert settings.mqtt.base_topic == f"coap-bridge/{host}"
    assert settings.mqtt.client_id == f"mqtt-coap-bridge-{host}"
    assert settings.coap.servers == {}


def test_readme_defaults_from_a_minimal_config(tmp_path: Path) -> None:
    # The README's configuration table, its figures written out: the minimal config sets
    # nothing but modem.port, so every other value is a default.
    settings = load_config(write(tmp_path, MINIMAL))
    modem = settings.modem
    assert (modem.baudrate, modem.apn, modem.command_timeout) == (115200, "", 5)
    assert (modem.registration_timeout, modem.max_instances) == (60, 4)
    assert modem.instance_idle_close == 300
    assert (modem.trace_file, modem.trace_max_bytes) == ("", 10485760)
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.hosts) == ("localhost", 1883, ())
    assert mqtt.protocol is MqttProtocol.V5
    assert (mqtt.username, mqtt.password_file, mqtt.tls.enabled) == ("", "", False)
    assert (mqtt.keepalive, mqtt.session_expiry) == (30, 86400)
    assert (mqtt.shared_group, mqtt.pool_topic) == ("", "coap-bridge/pool")
    assert (mqtt.pool_keepalive, mqtt.pool_receive_maximum) == (10, 8)
    assert mqtt.max_queued == 1000
    coap = settings.coap
    assert (coap.servers, coap.allow_hosts) == ({}, ())
    assert (coap.default_timeout, coap.max_timeout) == (30, 300)
    assert (coap.max_in_flight, coap.max_request_payload) == (64, 65536)
    assert (settings.dedupe_window, settings.state_dir) == (600, "")
    assert (settings.health_interval, settings.shutdown_grace) == (60, 20)
    assert (settings.logging.level, settings.logging.format) == ("info", "text")
    assert settings.metrics.listen == ""


def test_explicit_names_are_kept(tmp_path: Path) -> None:
    text = MINIMAL + "gateway_id: g1\nmqtt:\n  client_id: me\n  base_topic: a/b\n"
    settings = load_config(write(tmp_path, text))
    assert (settings.mqtt.client_id, settings.mqtt.base_topic) == ("me", "a/b")


def test_fleet_config_values(tmp_path: Path) -> None:
    settings = load_config(REPO / "config" / "test-fleet.yaml")
    assert settings.mqtt.protocol is MqttProtocol.V311
    assert settings.coap.servers["valves"].host == "2001:db8::7"
    assert settings.coap.allow_hosts == ("10.0.0.5", "sensors.example")
    assert settings.coap.is_allowed_host("meters.example")
    assert not settings.coap.is_allowed_host("evil.example")
    assert "shared group site7 on plant/site7/pool" in describe(settings)


@pytest.mark.parametrize("value", ["5", '"5"', "3.1.1", '"3.1.1"'])
def test_protocol_spellings(tmp_path: Path, value: str) -> None:
    settings = load_config(write(tmp_path, MINIMAL + f"mqtt:\n  protocol: {value}\n"))
    assert settings.mqtt.protocol.value == value.strip('"')


def test_empty_sections_take_defaults(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL + "mqtt:\ncoap:\n  servers:\nlogging:\n"))
    assert settings.mqtt.port == 1883
    assert settings.coap.servers == {}


def test_settings_are_frozen() -> None:
    settings = load_config(SHARED_EXAMPLE)
    with pytest.raises(pydantic.ValidationError):
        settings.mqtt.port = 1  # type: ignore[misc]


BROKEN = [
    pytest.param(MINIMAL + "mqtt:\n  prot: 5\n", "mqtt.prot (line 4): unknown key", id="unknown"),
    pytest.param(MINIMAL + "extra: 1\n", "extra (line 3): unknown key", id="unknown-top"),
    pytest.param(MINIMAL + "mqtt:\n  port: 70000\n", "mqtt.port (line 4)", id="port-range"),
    pytest.param(MINIMAL + "mqtt:\n  port: 0\n", "mqtt.port (line 4)", id="port-zero"),
    pytest.param(MINIMAL + 'mqtt:\n  port: "1883"\n', "mqtt.port (line 4)", id="port-str"),
    pytest.param(
        MINIMAL + "mqtt:\n  protocol: 4\n", "mqtt.protocol (line 4): must be 5", id="proto"
    ),
    pytest.param(MINIMAL + "mqtt:\n  protocol: 3.1\n", "mqtt.protocol (line 4)", id="proto-float"),
    pytest.param(
        MINIMAL + "mqtt:\n  tls:\n    enabled: true\n    ca_file: /nonexistent/ca.pem\n",
        "mqtt.tls.ca_file (line 6): file /nonexistent/ca.pem does not exist",
        id="tls-ca",
    ),
    pytest.param(
        MINIMAL + "mqtt:\n  tls:\n    key_file: k.pem\n",
        "mqtt.tls.key_file (line 5): key_file is set but cert_file is not",
        id="tls-key-without-cert",
    ),
    pytest.param(
        MINIMAL + "coap:\n  default_timeout: 400\n",
        "coap.default_timeout (line 4): 400 s exceeds coap.max_timeout (300 s)",
        id="timeouts",
    ),
    pytest.param(MINIMAL + "coap:\n  max_timeout: 0\n", "coap.max_timeout (line 4)", id="t0"),
    pytest.param(MINIMAL + "  command_timeout: -1\n", "modem.command_timeout (line 3)", id="neg"),
    pytest.param(MINIMAL + "  max_instances: 0\n", "modem.max_instances (line 3)", id="inst"),
    pytest.param(MINIMAL + "health_interval: .inf\n", "health_interval (line 3)", id="inf"),
    pytest.param(MINIMAL + "logging:\n  level: verbose\n", "logging.level (line 4)", id="level"),
    pytest.param(MINIMAL + "logging:\n  format: xml\n", "logging.format (line 4)", id="format"),
    pytest.param("modem:\n  baudrate: 9600\n", "modem.port (line 1): required key", id="no-port"),
    pytest.param("gateway_id: g\n", "(top level) (line 1): no modem configured", id="no-modem"),
    pytest.param(
        MINIMAL + "mqtt:\n  base_topic: a/+/b\n", "mqtt.base_topic (line 4): topic", id="plus"
    ),
    pytest.param(MINIMAL + "mqtt:\n  base_topic: a/#\n", "mqtt.base_topic (line 4)", id="hash"),
    pytest.param(MINIMAL + 'mqtt:\n  base_topic: "a\\0b"\n', "must not contain NUL", id="nul"),
    pytest.param(MINIMAL + "mqtt:\n  base_topic: $SYS/x\n", "must not start with '$'", id="$"),
    pytest.param(MINIMAL + "mqtt:\n  pool_topic: p/#\n", "mqtt.pool_topic (line 4)", id="pool"),
    pytest.param(
        MINIMAL + "mqtt:\n  shared_group: a/b\n", "mqtt.shared_group (line 4)", id="group"
    ),
    pytest.param(MINIMAL + "gateway_id: gw+1\n", "gateway_id (line 3): gateway id", id="gw"),
    pytest.param(
        MINIMAL + "coap:\n  servers:\n    m:\n      host: bad host\n",
        "coap.servers.m.host (line 6): 'bad host' is not a host name",
        id="server-host",
    ),
    pytest.param(
        MINIMAL + "coap:\n  servers:\n    m:\n      port: 5683\n",
        "coap.servers.m.host (line 5): required key",
        id="server-no-host",
    ),
    pytest.param(
        MINIMAL + "coap:\n  servers:\n    'a b':\n      host: h\n",
        "coap.servers.a b (line 5): server alias 'a b'",
        id="alias",
    ),
    pytest.param(
        MINIMAL + "coap:\n  allow_hosts:\n    - ok.example\n    - 'no way'\n",
        "coap.allow_hosts.1 (line 6)",
        id="allow-host",
    ),
    pytest.param(
        MINIMAL + "metrics:\n  listen: '9108'\n",
        "metrics.listen (line 4): '9108' must be host:port",
        id="metrics-listen",
    ),
    pytest.param(MINIMAL + "modem:\n  port: /dev/x\n", "modem (line 3): duplicate key", id="dup"),
    pytest.param(MINIMAL + "mqtt: [1, 2\n", "line 4, column 1: YAML syntax error", id="syntax"),
    pytest.param("- 1\n- 2\n", "must be a mapping", id="top-list"),
    pytest.param(MINIMAL + "---\nother: 1\n", "YAML syntax error", id="two-docs"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_config_names_path_and_line(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert any(expected in problem for problem in problems), problems


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, MINIMAL + "logging:\n  lvl: info\n"))
    assert problem == "logging.lvl (line 4): unknown key (known keys: level, format)"


def test_unknown_server_key_lists_server_keys(tmp_path: Path) -> None:
    text = MINIMAL + "coap:\n  servers:\n    m:\n      host: h\n      colour: red\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem == (
        "coap.servers.m.colour (line 7): unknown key "
        "(known keys: host, port, modem, oscore, require_oscore)"
    )


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = (
        "modem:\n  port: /dev/ttyUSB2\n  baudrate: 0\n"
        "mqtt:\n  port: 99999\n  base_topic: a/#\n"
        "coap:\n  max_in_flight: 0\nlogging:\n  level: loud\n"
    )
    problems = problems_of(write(tmp_path, text))
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "modem.baudrate",
        "mqtt.port",
        "mqtt.base_topic",
        "coap.max_in_flight",
        "logging.level",
    ]
    assert "5 problems" in str(ConfigError("x", problems))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.yaml")
    assert problems == ["cannot read the file: No such file or directory"]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    problems = problems_of(write(tmp_path, MINIMAL + "\n".join(levels) + "\n"))
    assert any("more than 100000 nodes" in problem for problem in problems)


# --- secrets and files -------------------------------------------------------------------


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    config = write(tmp_path, MINIMAL + f"mqtt:\n  password_file: {secret}\n")
    (problem,) = problems_of(config)
    assert problem == (
        f"mqtt.password_file (line 4): password file {secret} is readable by group/others "
        f"(mode 0644); run chmod 600 {secret}"
    )


def test_password_file_missing_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, MINIMAL + "mqtt:\n  password_file: nope\n")
    (problem,) = problems_of(config)
    assert (
        problem == f"mqtt.password_file (line 4): password file {tmp_path / 'nope'} does not exist"
    )


def test_password_is_read_relative_to_config_and_newline_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2 \n")
    secret.chmod(0o600)
    settings = load_config(write(tmp_path, MINIMAL + "mqtt:\n  password_file: secret\n"))
    assert settings.mqtt.password_file == str(secret)
    assert load_password(settings) == "hunter2 "
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by group/others"):
        load_password(settings)


def test_no_password_file_means_no_password() -> None:
    assert load_password(load_config(SHARED_EXAMPLE)) is None


def test_tls_files_must_exist_only_when_enabled(tmp_path: Path, tls_files: TlsFiles) -> None:
    off = MINIMAL + "mqtt:\n  tls:\n    ca_file: missing.pem\n"
    assert load_config(write(tmp_path, off)).mqtt.tls.ca_file == str(tmp_path / "missing.pem")
    for name, source in (
        ("ca.pem", tls_files.ca_file),
        ("cert.pem", tls_files.client_cert),
        ("key.pem", tls_files.client_key),
    ):
        shutil.copy(source, tmp_path / name)
    on = MINIMAL + (
        "mqtt:\n  port: 8883\n  tls:\n    enabled: true\n    ca_file: ca.pem\n"
        "    cert_file: cert.pem\n    key_file: key.pem\n"
    )
    settings = load_config(write(tmp_path, on))
    assert settings.mqtt.tls.key_file == os.path.join(tmp_path, "key.pem")
    assert "(MQTT 5, TLS)" in describe(settings)


def test_tls_section_reports_its_unknown_keys_and_missing_files_together(tmp_path: Path) -> None:
    text = MINIMAL + "mqtt:\n  tls:\n    enabled: true\n    ca: x\n    ca_file: ca.pem\n"
    assert problems_of(write(tmp_path, text)) == [
        f"mqtt.tls.ca_file (line 7): file {tmp_path / 'ca.pem'} does not exist"
        " (mqtt.tls.enabled is true)",
        "mqtt.tls.ca (line 6): unknown key (known keys: enabled, ca_file, cert_file, key_file)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "mqtt:\n  host: bro\x01ker\n", "line 4, column 12: control character U+0001"),
        (MINIMAL + "# a comment\x00\n", "line 3, column 12: control character U+0000"),
    ],
)
def test_control_character_is_a_located_problem(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith(expected), problem


def _tls_config(ca: Path, cert: Path | None = None, key: Path | None = None) -> str:
    lines = ["mqtt:", "  tls:", "    enabled: true", f"    ca_file: {ca}"]
    if cert is not None:
        lines.append(f"    cert_file: {cert}")
    if key is not None:
        lines.append(f"    key_file: {key}")
    return MINIMAL + "\n".join(lines) + "\n"


def test_tls_material_is_loaded_and_each_problem_named(tmp_path: Path, tls_files: TlsFiles) -> None:
    not_a_cert = tmp_path / "not-a-cert.pem"
    not_a_cert.write_text("this is not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            *("openssl", "pkey", "-in", str(tls_files.client_key), "-aes256"),
            *("-passout", "pass:secret", "-out", str(encrypted)),
        ],
        check=True,
        capture_output=True,
    )
    cases = [
        (_tls_config(not_a_cert), "mqtt.tls.ca_file (line 6): ", "holds no PEM certificate"),
        (
            _tls_config(tls_files.ca_file, tls_files.client_cert, tls_files.server_key),
            "mqtt.tls.key_file (line 8): ",
            "does not belong to the certificate",
        ),
        (
            _tls_config(tls_files.ca_file, tls_files.client_cert, encrypted),
            "mqtt.tls.key_file (line 8): ",
            "protected by a passphrase",
        ),
        (
            _tls_config(tls_files.ca_file, not_a_cert, tls_files.client_key),
            "mqtt.tls.cert_file (line 7): ",
            "holds no PEM certificate",
        ),
        (
            _tls_config(tls_files.ca_file, tls_files.client_cert),
            "mqtt.tls.key_file (line 4): ",
            "holds no usable PEM private key",
        ),
    ]
    for text, where, what in cases:
        problems = problems_of(write(tmp_path, text))
        assert problems[0].startswith(where), problems
        assert what in problems[0], problems
    good = _tls_config(tls_files.ca_file, tls_files.client_cert, tls_files.client_key)
    assert load_config(write(tmp_path, good)).mqtt.tls.enabled
