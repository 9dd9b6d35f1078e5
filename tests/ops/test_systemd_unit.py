"""The shipped unit file passes systemd's own checks, as shipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "mqtt-coap-bridge.service"
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unit_verifies_cleanly() -> None:
    result = _analyze("verify")
    assert result.returncode == 0, result.stderr
    # verify reports problems (unknown keys, bad values) as warnings with exit code 0.
    assert result.stderr.strip() == ""
    assert result.stdout.strip() == ""


def test_unit_exposure_is_low() -> None:
    result = _analyze("security", "--offline=true", "--no-pager")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout


def test_unit_keeps_the_deployment_contract() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["ExecStart"][0].endswith(
        "mqtt-coap-bridge run -c /etc/mqtt-coap-bridge/config.yaml"
    )
    assert settings["WatchdogSec"] == ["30"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["SupplementaryGroups"] == ["dialout"]
    assert set(settings["DeviceAllow"]) == {"char-ttyUSB rw", "char-ttyACM rw"}
    # OSCORE sequence numbers live under /var/lib/mqtt-coap-bridge and must persist.
    assert settings["StateDirectory"] == ["mqtt-coap-bridge"]
