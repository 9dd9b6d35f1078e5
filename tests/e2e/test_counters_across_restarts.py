"""Counters in health describe the process: a reload that restarts the layers keeps them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(60)


def health_until(
    read: Callable[[], dict[str, Any]], condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first retained health object that meets `condition` (polled for 15 s)."""

    def met() -> dict[str, Any] | None:
        health = read()
        return health if condition(health) else None

    found: dict[str, Any] = eventually(met, 15.0, "a health object meeting the condition")
    return found


def test_modem_resets_survive_a_reload_that_restarts_the_layers(
    bridge_stack: BridgeStackFactory,
) -> None:
    stack = bridge_stack()
    stack.sim.reboot()
    health_until(stack.health, lambda h: h["modem"]["resets"] == 1 and h["modem"]["ready"])

    # A modem setting cannot be applied live: the layers restart with a new driver.
    stack.reload({"modem.command_timeout": 3})
    stack.wait_log("restarting the layers")
    stack.wait_log("bridge ready", timeout=15)
    health = health_until(
        stack.health, lambda h: h["config"]["reloads"] == 1 and "modem" in h and h["modem"]["ready"]
    )

    assert health["modem"]["resets"] == 1
    answer = stack.mqtt.request({"id": "after-restart", "uri": "coap://lab/hello"})
    assert answer["ok"] is True
