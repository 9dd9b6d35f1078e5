"""Config keys of fleets: `mqtt.hosts`, the pool connection's knobs and `state_dir`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from tests.config.test_config import MINIMAL, problems_of, write


def test_hosts_pool_knobs_and_state_dir_load(tmp_path: Path) -> None:
    text = MINIMAL + (
        "state_dir: state\n"
        "mqtt:\n"
        '  hosts: ["node1:1883", " node2 ", "[::1]:1884"]\n'
        "  pool_keepalive: 5\n"
        "  pool_receive_maximum: 4\n"
    )
    settings = load_config(write(tmp_path, text))
    assert settings.mqtt.hosts == ("node1:1883", "node2", "[::1]:1884")
    assert (settings.mqtt.pool_keepalive, settings.mqtt.pool_receive_maximum) == (5, 4)
    # Relative to the config file, like every other path.
    assert settings.state_dir == str(tmp_path / "state")


def test_defaults() -> None:
    settings = load_config(Path(__file__).parent / "contract-example.yaml")
    assert settings.mqtt.hosts == ()
    assert (settings.mqtt.pool_keepalive, settings.mqtt.pool_receive_maximum) == (10, 8)
    assert settings.state_dir == ""


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ('  hosts: ["a:1883"]\n  host: b\n', "set either mqtt.hosts or mqtt.host/mqtt.port"),
        ('  hosts: ["a:1883"]\n  port: 1884\n', "set either mqtt.hosts or mqtt.host/mqtt.port"),
        ("  hosts: a:1883\n", 'must be a list of "host:port" strings'),
        ('  hosts: ["a:99999"]\n', "the port must be a number from 1 to 65535"),
        ('  hosts: ["2001:db8::1"]\n', "[address]:port"),
        ("  pool_keepalive: 0\n", "mqtt.pool_keepalive (line 4)"),
        ("  pool_receive_maximum: 0\n", "mqtt.pool_receive_maximum (line 4)"),
    ],
)
def test_bad_fleet_keys_say_what_to_do(tmp_path: Path, mqtt: str, expected: str) -> None:
    problems = problems_of(write(tmp_path, MINIMAL + "mqtt:\n" + mqtt))
    assert any(expected in problem for problem in problems), problems
