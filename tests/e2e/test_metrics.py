"""Prometheus metrics of a running daemon, scraped with curl: they agree with health."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.tools.loopback import free_port
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory

pytestmark = pytest.mark.timeout(90)
PREFIX = "mqtt_coap_bridge_"


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """`curl <url>` as a user would, parsed: series name -> labels -> value."""
    text = subprocess.run(
        ["curl", "-sf", "--max-time", "5", url], capture_output=True, text=True, check=True
    ).stdout
    series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            series.setdefault(sample.name, {})[labels] = sample.value
    return series


def value(series: dict[str, Any], name: str, **labels: str) -> float:
    return float(series[PREFIX + name][tuple(sorted(labels.items()))])


def agree(stack: BridgeStack, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A health object and a scrape that describe the same moment (both taken at rest)."""
    deadline = time.monotonic() + 20
    while True:
        health, series = stack.health(), scrape(url)
        if all(
            health["counters"][key] == value(series, f"{key}_total")
            for key in ("requests", "responses", "errors", "timeouts")
        ):
            return health, series
        assert time.monotonic() < deadline, (health, series)
        time.sleep(0.2)


def test_metrics_after_a_few_requests_agree_with_health(bridge_stack: BridgeStackFactory) -> None:
    port = free_port()
    stack = bridge_stack(
        overrides={
            "metrics.listen": f"127.0.0.1:{port}",
            "health_interval": 1,
            "coap.default_timeout": 1,
        }
    )
    url = f"http://127.0.0.1:{port}/metrics"
    assert f"metrics on {url}" in stack.wait_log("metrics on")
    for body in (
        {"id": "m1", "uri": "coap://lab/hello"},
        {"id": "m2", "uri": "coap://lab/hello"},
        {"id": "m3", "uri": "coap://lab/nothing-here"},
        {"id": "m4", "uri": "coap://silent/x"},
        {"id": "m5", "uri": "coap://forbidden.example/x"},
    ):
        stack.mqtt.request(body)
    stack.mqtt.request({"id": "m1", "uri": "coap://lab/hello"})  # answered from the cache

    health, series = agree(stack, url)

    counters = health["counters"]
    assert (counters["requests"], counters["responses"], counters["errors"]) == (6, 4, 2)
    assert value(series, "timeouts_total") == counters["timeouts"] == 1
    assert value(series, "dedupe_hits_total") == counters["dedupe_hits"] == 1
    assert value(series, "answers_dropped_total") == counters["dropped_queued"] == 0
    outcomes = {
        dict(labels)["outcome"]: n for labels, n in series[PREFIX + "answers_total"].items()
    }
    assert outcomes == {"response": 4, "timeout": 1, "forbidden_target": 1}
    assert value(series, "request_latency_seconds_count") == 6
    assert value(series, "in_flight") == health["coap"]["in_flight"] == 0
    assert value(series, "instances_open") == health["coap"]["instances_open"] >= 1

    modem = health["modem"]
    labels = {"modem": str(modem.get("name", 0)), "port": modem["port"]}
    assert value(series, "modem_up", **labels) == 1.0 == float(modem["ready"])
    assert value(series, "modem_registered", **labels) == float(modem["registered"])
    assert value(series, "modem_signal_dbm", **labels) == modem["rssi_dbm"]
    assert value(series, "modem_resets_total", **labels) == modem["resets"]
    assert value(series, "at_commands_total", **labels) >= modem["at_commands"] > 0
    assert value(series, "line_bytes_out_total", **labels) >= modem["bytes_out"] > 0
    assert value(series, "line_bytes_in_total", **labels) >= modem["bytes_in"] > 0
    assert value(series, "up") == 1.0


def test_metrics_are_off_by_default(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()
    stack.mqtt.request({"id": "x", "uri": "coap://lab/hello"})
    assert "metrics on" not in stack.daemon_log()
