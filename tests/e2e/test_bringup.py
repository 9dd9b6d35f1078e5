"""Modem bring-up seen from outside: reloads and stops that come while it waits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(90)

NOT_USABLE = "modem not usable"


def _log_count(stack: BridgeStack, text: str) -> int:
    return stack.daemon_log().count(text)


def _wait_count(stack: BridgeStack, text: str, count: int, timeout: float = 15.0) -> None:
    eventually(lambda: _log_count(stack, text) >= count, timeout, f"{text!r} logged {count} times")


def _answer_ok(stack: BridgeStack, request_id: str) -> None:
    answer = stack.mqtt.request({"id": request_id, "uri": "coap://lab/hello"}, timeout=20)
    assert answer.body["ok"] is True, answer.body


def test_a_reload_during_bring_up_backs_off_and_takes_the_new_port(
    bridge_stack: BridgeStackFactory, tmp_path: Path
) -> None:
    stack = bridge_stack(start=False, overrides={"modem.port": str(tmp_path / "no-modem")})
    stack.start_daemon(wait=False)
    _wait_count(stack, NOT_USABLE, 1)

    # A change that restarts the layers, still without a usable port: the bring-up
    # starts over with the new settings and then backs off as before.
    before = _log_count(stack, NOT_USABLE)
    stack.reload({"modem.command_timeout": 3.0})
    stack.wait_log("restarting the layers")
    _wait_count(stack, NOT_USABLE, before + 2)
    # Two attempts after the restart are at least half a second of backoff apart; a
    # loop that does not wait logs hundreds of lines in the time this check takes.
    assert _log_count(stack, NOT_USABLE) <= before + 3

    stack.reload({"modem.port": stack.pty_path})
    stack.wait_online(timeout=20)
    _answer_ok(stack, "after-port-fix")
    assert _log_count(stack, NOT_USABLE) <= 6


def test_reloads_while_unplugged_back_off_and_serve_after_the_replug(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack()
    stack.sim.unplug(6.0)
    stack.reload({"modem.command_timeout": 3.0})
    stack.wait_log("restarting the layers")
    _wait_count(stack, NOT_USABLE, 1)
    stack.reload({"modem.command_timeout": 4.0})
    _wait_count(stack, "restarting the layers", 2)

    stack.wait_online(timeout=30)
    _answer_ok(stack, "after-replug")
    # About one attempt per backoff step over the 6 s unplug, never a spin.
    assert _log_count(stack, NOT_USABLE) <= 10


def test_sigterm_while_the_modem_registers_exits_at_once(
    bridge_stack: BridgeStackFactory, tmp_path: Path
) -> None:
    trace = tmp_path / "at.trace"
    stack = bridge_stack(
        start=False,
        simulator_args=("--register-after", "600"),
        overrides={"modem.registration_timeout": 60},
    )
    stack.start_daemon(wait=False, args=("--trace-at", str(trace)))
    eventually(
        lambda: "CEREG?" in (trace.read_text() if trace.exists() else ""),
        20,
        "the daemon asking for the registration",
    )

    started = time.monotonic()
    status = stack.stop_daemon(timeout=30)
    waited = time.monotonic() - started
    assert status == 0, stack.daemon_log()[-3000:]
    # Far inside the unit's TimeoutStopSec=30; the registration wait alone is 60 s.
    assert waited < 10, f"SIGTERM took {waited:.1f} s"
