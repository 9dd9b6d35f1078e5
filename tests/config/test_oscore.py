"""OSCORE settings: `coap.servers.<alias>.oscore.context_dir` and `require_oscore`, and
the contexts `check-config` refuses (readable by others, not writable, shared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import describe, load_config
from tests.config.test_config import MINIMAL, problems_of, write
from tests.fixtures.oscore_server import (
    CLIENT_ID_HEX,
    MASTER_SECRET_HEX,
    SERVER_ID_HEX,
    write_context,
)

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


def context(directory: Path) -> Path:
    return write_context(
        directory,
        sender_id_hex=CLIENT_ID_HEX,
        recipient_id_hex=SERVER_ID_HEX,
        secret_hex=MASTER_SECRET_HEX,
    )


def servers(*entries: str) -> str:
    return MINIMAL + "coap:\n  servers:\n" + "".join(entries)


def server(alias: str, context_dir: Path | str | None, *extra: str, port: int = 5683) -> str:
    text = f"    {alias}:\n      host: 127.0.0.1\n      port: {port}\n"
    if context_dir is not None:
        text += f"      oscore:\n        context_dir: {context_dir}\n"
    return text + "".join(f"      {line}\n" for line in extra)


def test_context_dir_sets_protection_and_requirement(tmp_path: Path) -> None:
    directory = context(tmp_path / "meters")
    path = write(tmp_path, servers(server("meters", directory), server("open", None, port=5684)))
    settings = load_config(path)

    meters = settings.coap.servers["meters"]
    assert meters.oscore is not None
    assert meters.oscore.context_dir == str(directory)
    assert meters.requires_oscore
    assert not settings.coap.servers["open"].requires_oscore
    assert settings.coap.oscore_context_dirs() == {"meters": str(directory)}
    assert settings.coap.oscore_required_by("127.0.0.1", 5683) == "meters"
    assert settings.coap.oscore_required_by("127.0.0.1", 5684) is None
    assert "2 servers (1 with OSCORE)" in describe(settings)


def test_relative_context_dir_is_resolved_against_the_config(tmp_path: Path) -> None:
    context(tmp_path / "ctx" / "meters")
    settings = load_config(write(tmp_path, servers(server("meters", "ctx/meters"))))

    oscore = settings.coap.servers["meters"].oscore
    assert oscore is not None
    assert oscore.context_dir == str(tmp_path / "ctx" / "meters")


def test_require_oscore_false_lets_plaintext_through(tmp_path: Path) -> None:
    directory = context(tmp_path / "meters")
    text = servers(server("meters", directory, "require_oscore: false"))
    settings = load_config(write(tmp_path, text))

    assert not settings.coap.servers["meters"].requires_oscore
    assert settings.coap.oscore_required_by("127.0.0.1", 5683) is None


def test_require_oscore_without_a_context_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, servers(server("m", None, "require_oscore: true"))))
    assert problem.startswith("coap.servers.m (line 5): require_oscore is true")


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_settings_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    directory = context(tmp_path / "meters")
    (directory / "settings.json").chmod(mode)
    (problem,) = problems_of(write(tmp_path, servers(server("meters", directory))))

    assert problem.startswith("coap.servers.meters.oscore.context_dir (line 9): ")
    assert f"readable by group/others (mode {mode:04o}); run chmod 600" in problem


def test_missing_context_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    text = servers(server("a", tmp_path / "nowhere"), server("b", tmp_path / "empty", port=1))
    problems = problems_of(write(tmp_path, text))

    assert "does not exist" in problems[0]
    assert "has no settings.json" in problems[1]


def test_one_context_for_two_aliases_is_refused(tmp_path: Path) -> None:
    directory = context(tmp_path / "meters")
    text = servers(server("a", directory), server("b", directory, port=5684))
    (problem,) = problems_of(write(tmp_path, text))

    assert problem.startswith("coap (line 3): servers a and b name the same OSCORE context")
    assert "must never be shared or copied" in problem


def check_config_as_nobody(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
            *(sys.executable, "-m", "bridge", "check-config", str(config)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )


@pytest.fixture
def world_traversable_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="oscore-cfg-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed")
def test_check_config_refuses_a_directory_the_bridge_user_cannot_write(
    world_traversable_dir: Path,
) -> None:
    # The context belongs to root (mode 0755); settings.json is the bridge user's own,
    # so only the directory is wrong, as when it was provisioned but not handed over.
    directory = context(world_traversable_dir / "meters")
    directory.chmod(0o755)
    os.chown(directory / "settings.json", NOBODY, NOBODY)
    config = write(world_traversable_dir, servers(server("meters", directory)))
    config.chmod(0o644)

    refused = check_config_as_nobody(config)
    os.chown(directory, NOBODY, NOBODY)
    accepted = check_config_as_nobody(config)

    assert refused.returncode != 0
    assert f"OSCORE context directory {directory} is not writable" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert "1 with OSCORE" in accepted.stdout
