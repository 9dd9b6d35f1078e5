"""A daemon that fails reports it through the log: in JSON mode every line is JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import service
from bridge.errors import ModemUnavailable

CONFIG = "modem:\n  port: /dev/ttyUSB2\nlogging:\n  format: json\n"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (RuntimeError("loop exploded"), "RuntimeError: loop exploded"),
        (ModemUnavailable("modem vanished"), "modem vanished"),
    ],
)
def test_a_crash_is_logged_as_json_lines(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: Exception,
    expected: str,
) -> None:
    async def crash(self: service.Daemon) -> None:
        raise failure

    monkeypatch.setattr(service.Daemon, "run", crash)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)

    assert service.run_daemon(str(config), log_format=None, log_level=None) == 1

    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines]  # each line on its own is JSON
    assert any(expected in entry.get("exc", entry["msg"]) for entry in entries), entries
