"""The `mqtt-coap-bridge` command line: check-config, request, --version."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import __version__
from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.simulator import REPO_ROOT
from tests.fixtures.stack_coap import HELLO_TEXT

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "bridge"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


# Each broken config, with the problems check-config must name: (dotted path, line).
BROKEN_CONFIGS = {
    "several-at-once": (
        """gateway_id: gw
modem:
  port: /dev/ttyUSB2
  bogus: 1
mqtt:
  port: 70000
  protocol: 4
  base_topic: a/+/b
  keepalive: "30"
coap:
  max_timeout: 300
  default_timeout: 500
  servers:
    "bad alias!":
      host: 127.0.0.1
logging:
  level: loud
""",
        [
            ("modem.bogus", 4),
            ("mqtt.port", 6),
            ("mqtt.protocol", 7),
            ("mqtt.base_topic", 8),
            ("mqtt.keepalive", 9),
            ("coap.default_timeout", 12),
            ("coap.servers.bad alias!", 14),
            ("logging.level", 17),
        ],
    ),
    "missing-modem-port": (
        "gateway_id: gw\nmodem:\n  baudrate: 9600\n",
        [("modem.port", 2)],
    ),
    "tls-file-missing": (
        "modem:\n  port: /dev/x\nmqtt:\n  tls:\n    enabled: true\n"
        "    ca_file: /nonexistent/ca.pem\n",
        [("mqtt.tls.ca_file", 6)],
    ),
    "unknown-section": (
        "modem:\n  port: /dev/x\nmqttt:\n  host: h\n",
        [("mqttt", 3)],
    ),
    "bad-host-in-allow-list": (
        "modem:\n  port: /dev/x\ncoap:\n  allow_hosts:\n    - ok.example\n    - 'not a host'\n",
        [("coap.allow_hosts.1", 6)],
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_CONFIGS))
def test_check_config_lists_every_error_with_path_and_line(tmp_path: Path, name: str) -> None:
    text, problems = BROKEN_CONFIGS[name]
    config = tmp_path / "config.yaml"
    config.write_text(text)

    result = run_cli("check-config", "-c", str(config))

    assert result.returncode == 1, result
    assert result.stdout == ""
    error_lines = result.stderr.splitlines()[1:]
    assert len(error_lines) == len(problems), result.stderr
    for path, line in problems:
        assert any(entry.strip().startswith(f"{path} (line {line}): ") for entry in error_lines), (
            f"{path} (line {line}) not reported:\n{result.stderr}"
        )


def test_check_config_refuses_a_password_file_readable_by_others(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    os.chmod(password, 0o644)
    config = tmp_path / "config.yaml"
    config.write_text("modem:\n  port: /dev/x\nmqtt:\n  password_file: password\n")

    result = run_cli("check-config", "-c", str(config))

    assert result.returncode == 1
    assert "mqtt.password_file (line 4): " in result.stderr
    assert "chmod 600" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_check_config_reports_a_yaml_syntax_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("modem:\n  port: /dev/x\nmqtt: [\n")

    result = run_cli("check-config", "-c", str(config))

    assert result.returncode == 1
    assert re.search(r"line \d+, column \d+: YAML syntax error", result.stderr), result.stderr


def test_check_config_accepts_the_example_with_one_line() -> None:
    result = run_cli("check-config", "-c", str(REPO_ROOT / "config" / "config.example.yaml"))

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "gw-0001" in result.stdout


def test_version() -> None:
    result = run_cli("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"mqtt-coap-bridge {__version__}"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_request_cli_against_the_running_daemon(
    bridge_stack: BridgeStackFactory, protocol: str
) -> None:
    stack = bridge_stack()

    result = run_cli(
        "request",
        "-H",
        stack.broker.host,
        "-p",
        str(stack.broker.port),
        "-t",
        stack.base,
        "-V",
        protocol,
        "-W",
        "10",
        "--id",
        f"cli-{protocol}",
        "coap://lab/hello",
    )

    assert result.returncode == 0, result.stderr
    assert HELLO_TEXT in result.stdout
    assert "2.05" in result.stdout


def test_request_cli_reads_broker_and_base_topic_from_the_config(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack()

    result = run_cli(
        "request",
        "-c",
        str(stack.config_path),
        "-m",
        "POST",
        "-d",
        "ping",
        "--content-format",
        "text/plain",
        "coap://lab/echo",
    )

    assert result.returncode == 0, result.stderr
    assert "2.04" in result.stdout
    assert "ping" in result.stdout


def test_request_cli_exits_nonzero_on_an_error_answer(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()

    result = run_cli("request", "-c", str(stack.config_path), "coap://192.0.2.1/x")

    assert result.returncode != 0
    assert "forbidden_target" in result.stdout + result.stderr
