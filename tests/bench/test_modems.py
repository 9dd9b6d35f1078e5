"""The pure pieces of the bench's modems section: the config with several modems, each
line's use and share, the lines' limit and the ratio."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bench.gateway import LineUse, send_shares, total
from bench.harness import LINE_BYTES_PER_SECOND, get
from bench.modems import lines_limit, speedup
from bench.stack import DaemonSettings, StackError, daemon_config, modem_section
from bridge.config.loader import load_config

SETTINGS = DaemonSettings(servers={"bench": 5683})


def stats(bytes_in: int, bytes_out: int, commands: int, datagrams_out: int) -> dict[str, int]:
    return {
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "commands": commands,
        "datagrams_out": datagrams_out,
        "datagrams_in": 0,
    }


def test_one_pty_keeps_the_modem_section() -> None:
    config = yaml.safe_load(daemon_config("/dev/pts/7", 1883, SETTINGS))
    assert "modems" not in config
    assert config["modem"] == {
        "port": "/dev/pts/7",
        "baudrate": 115200,
        "command_timeout": 5,
        "max_instances": 4,
        "instance_idle_close": 300,
    }
    assert daemon_config(["/dev/pts/7"], 1883, SETTINGS) == daemon_config(
        "/dev/pts/7", 1883, SETTINGS
    )


def test_two_ptys_make_a_named_modems_list(tmp_path: Path) -> None:
    text = daemon_config(["/dev/pts/7", "/dev/pts/8"], 1883, SETTINGS)
    config = yaml.safe_load(text)
    assert "modem" not in config
    assert [(modem["name"], modem["port"]) for modem in config["modems"]] == [
        ("a", "/dev/pts/7"),
        ("b", "/dev/pts/8"),
    ]
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    settings = load_config(path)
    assert [(modem.name, modem.port, modem.max_instances) for modem in settings.modems] == [
        ("a", "/dev/pts/7", 4),
        ("b", "/dev/pts/8", 4),
    ]


def test_modem_section_refuses_no_pty() -> None:
    with pytest.raises(StackError):
        modem_section([], 4)


def test_line_use_between_two_snapshots_and_summed() -> None:
    a = LineUse.between(stats(100, 50, 3, 1), stats(1100, 2050, 13, 9))
    b = LineUse.between(stats(0, 0, 0, 0), stats(900, 1800, 10, 8))
    assert a == LineUse(to_modem=1000, from_modem=2000, commands=10, sends=8)
    assert total([a, b]) == LineUse(1900, 3800, 20, 16)
    assert total([]) == LineUse(0, 0)


def test_send_shares() -> None:
    assert send_shares([LineUse(0, 0, sends=30), LineUse(0, 0, sends=10)]) == [0.75, 0.25]
    assert all(math.isnan(share) for share in send_shares([LineUse(0, 0), LineUse(0, 0)]))


def test_lines_limit_adds_each_line() -> None:
    # 100 exchanges in 14,400 bytes: 144 B each, 80 exchanges/s on one line.
    one = LineUse(to_modem=9_000, from_modem=14_400, sends=100)
    assert lines_limit([one]) == pytest.approx(LINE_BYTES_PER_SECOND / 144)
    assert lines_limit([one, one]) == pytest.approx(2 * LINE_BYTES_PER_SECOND / 144)
    assert lines_limit([one, LineUse(0, 0)]) == pytest.approx(LINE_BYTES_PER_SECOND / 144)
    assert math.isnan(lines_limit([LineUse(0, 0)]))


def test_speedup() -> None:
    assert speedup(80.0, 160.0) == 2.0
    assert math.isnan(speedup(0.0, 160.0))
    assert not speedup(0.0, 160.0) >= 1.8  # a base that measured nothing is a FAIL


def test_get_names_the_modem_only_when_asked() -> None:
    assert get("coap://bench/small")(0, "x") == {
        "method": "GET",
        "uri": "coap://bench/small",
        "timeout": 60,
    }
    assert get("coap://bench/small", modem="b")(3, "y")["modem"] == "b"
