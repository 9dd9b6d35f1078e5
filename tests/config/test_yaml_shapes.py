"""Recursive and deeply nested YAML: a config problem with its line, never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError

MINIMAL = "modem:\n  port: /dev/ttyUSB2\n"

SHAPES = [
    pytest.param(
        MINIMAL + "x: &a [*a]\n", r"x\.0 \(line 3\): recursive alias", id="list-alias-to-itself"
    ),
    pytest.param(
        MINIMAL + "coap:\n  servers: &s\n    lab: *s\n",
        r"coap\.servers\.lab \(line 5\): recursive alias",
        id="mapping-alias-to-its-parent",
    ),
    pytest.param(
        MINIMAL + "x: " + "[" * 5000 + "]" * 5000 + "\n",
        r"line 3, column \d+: nested more than 64 levels deep",
        id="five-thousand-brackets",
    ),
    pytest.param(
        MINIMAL + "x:\n" + "".join("  " * d + "- \n" for d in range(1, 400)),
        r"x(\.0)+ \(line \d+\): nested more than 64 levels deep",
        id="deep-block-sequence",
    ),
]


@pytest.mark.parametrize(("text", "problem"), SHAPES)
def test_load_config_reports_the_shape_with_its_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert any(re.search(problem, line) for line in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(("text", "problem"), SHAPES[:1] + SHAPES[2:3])
def test_check_config_names_the_problem_without_a_traceback(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)

    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert re.search(problem, result.stdout + result.stderr)


def test_aliases_that_only_repeat_a_value_still_load(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        MINIMAL + "coap:\n  servers:\n    a: &lab {host: 127.0.0.1, port: 5683}\n    b: *lab\n"
    )
    settings = load_config(path)
    assert settings.coap.servers["a"] == settings.coap.servers["b"]
