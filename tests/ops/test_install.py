"""Installed like a Python program: `python -m build`, then the wheel with pipx.

Needs PyPI (pipx installs the dependencies into the program's own venv) and the
`build` and `pipx` packages of the dev extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def test_the_wheel_installs_and_runs_with_pipx(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # sdist first, then the wheel from it: the sdist must carry everything the wheel does.
    run(sys.executable, "-m", "build", "--outdir", dist, REPO_ROOT, cwd=tmp_path)
    wheel = dist / f"mqtt_coap_bridge-{__version__}-py3-none-any.whl"
    assert wheel.exists(), sorted(path.name for path in dist.iterdir())

    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    run(sys.executable, "-m", "pipx", "install", wheel, cwd=tmp_path, env=env)
    program = tmp_path / "bin" / "mqtt-coap-bridge"
    assert run(program, "--version", cwd=tmp_path).strip() == f"mqtt-coap-bridge {__version__}"
    config = REPO_ROOT / "config" / "test-minimal.yaml"
    checked = run(program, "check-config", config, cwd=tmp_path)
    assert checked.startswith("config OK")

    # The installed package, not this checkout (hence the cwd): it carries the request
    # schema it publishes.
    python = tmp_path / "pipx" / "venvs" / "mqtt-coap-bridge" / "bin" / "python"
    probe = (
        "import bridge, json; from bridge.mapping.schema import generic_request_schema; "
        "print(json.dumps([bridge.__file__, generic_request_schema()['title']]))"
    )
    location, title = json.loads(run(python, "-c", probe, cwd=tmp_path))
    assert not Path(location).is_relative_to(REPO_ROOT)
    assert title == "Request"
