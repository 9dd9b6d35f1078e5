"""SIGHUP with a recursive or deeply nested YAML file: refused, reported, old config kept."""

from __future__ import annotations

import pytest
import yaml

from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.wait import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        pytest.param("x: &a [*a]\n", "recursive alias", id="recursive-alias"),
        pytest.param("x: " + "[" * 5000 + "]" * 5000 + "\n", "levels deep", id="deep-nesting"),
    ],
)
def test_sighup_with_a_pathological_yaml_keeps_serving_and_reports_it(
    bridge_stack: BridgeStackFactory, tail: str, problem: str
) -> None:
    stack = bridge_stack()

    stack.reload(text=yaml.safe_dump(stack.config) + tail)
    log = stack.wait_log("reload refused")

    assert "Traceback" not in log
    config = eventually(
        lambda: (found := stack.health()["config"])["error"] is not None and found,
        5,
        "health reporting the config error",
    )
    assert problem in config["error"]
    assert config["reloads"] == 0
    answer = stack.mqtt.request({"id": "after-bad-hup", "uri": "coap://lab/hello"})
    assert answer.body["ok"] is True
