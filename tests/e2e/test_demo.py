"""`mqtt-coap-bridge demo` runs the whole product and shows its round trips."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_demo_shows_get_blockwise_get_observe_and_a_protected_get() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--no-wait", "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_id: dict[str, list[dict[str, object]]] = {}
    for answer in answers:
        by_id.setdefault(str(answer["id"]), []).append(answer)
    assert by_id["demo-1"][0]["payload"] == "Hello from the demo CoAP server"
    assert "(3040 characters)" in str(by_id["demo-2"][0]["payload"])
    assert [a["observe"] for a in by_id["demo-3"]] == [0, 1, 2]
    assert by_id["demo-4"][0]["payload"] == "Protected end to end with OSCORE"
    assert all(a["ok"] for a in answers)
    assert "mosquitto_pub" in result.stdout
