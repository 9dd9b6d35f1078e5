"""Prometheus metrics: series built from the health object, scraped over real HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import listen_address
from bridge.ops.metrics import BridgeMetrics, MetricsServer, is_loopback

HEALTH: dict[str, Any] = {
    "state": "online",
    "uptime_s": 42,
    "coap": {"instances_open": 2, "in_flight": 3, "observations": 1, "waiting": 0},
    "counters": {
        "requests": 10,
        "responses": 8,
        "errors": 2,
        "timeouts": 1,
        "dropped_queued": 0,
        "dedupe_hits": 4,
        "queued": 5,
    },
}
MODEM = {
    "port": "/dev/ttyUSB2",
    "ready": True,
    "registered": True,
    "rssi_dbm": -71,
    "resets": 3,
    "at_commands": 120,
    "at_timeouts": 2,
    "bytes_in": 5000,
    "bytes_out": 3000,
}


async def scrape(
    port: int, request: bytes = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition("\r\n\r\n")
    return head, body


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def served(health: dict[str, Any]) -> tuple[BridgeMetrics, dict[Any, float]]:
    metrics = BridgeMetrics(lambda: health)
    metrics.answered("response", 0.03)
    metrics.answered("timeout", 7.0)
    async with MetricsServer(metrics, "127.0.0.1:0") as server:
        head, body = await scrape(server.port)
    assert head.startswith("HTTP/1.0 200 OK"), head
    assert "text/plain" in head
    return metrics, samples(body)


async def test_series_follow_the_single_modem_health() -> None:
    _, found = await served({**HEALTH, "modem": MODEM})
    prefix = "mqtt_coap_bridge_"
    modem = (("modem", "0"), ("port", "/dev/ttyUSB2"))
    expected = {
        ("up", ()): 1,
        ("uptime_seconds", ()): 42,
        ("requests_total", ()): 10,
        ("responses_total", ()): 8,
        ("errors_total", ()): 2,
        ("timeouts_total", ()): 1,
        ("dedupe_hits_total", ()): 4,
        ("answers_dropped_total", ()): 0,
        ("answers_queued", ()): 5,
        ("in_flight", ()): 3,
        ("instances_open", ()): 2,
        ("modem_up", modem): 1,
        ("modem_registered", modem): 1,
        ("modem_signal_dbm", modem): -71,
        ("modem_resets_total", modem): 3,
        ("at_commands_total", modem): 120,
        ("at_timeouts_total", modem): 2,
        ("line_bytes_in_total", modem): 5000,
        ("line_bytes_out_total", modem): 3000,
        ("answers_total", (("outcome", "response"),)): 1,
        ("answers_total", (("outcome", "timeout"),)): 1,
        ("request_latency_seconds_count", ()): 2,
        ("request_latency_seconds_bucket", (("le", "0.05"),)): 1,
        ("request_latency_seconds_bucket", (("le", "10.0"),)): 2,
    }
    for (name, labels), value in expected.items():
        assert found[(prefix + name, labels)] == value, name
    assert all(name.startswith(prefix) for name, _ in found)


async def test_one_label_set_per_modem_of_the_list() -> None:
    modems = [
        {**MODEM, "name": "a", "port": "/dev/ttyUSB2"},
        {**MODEM, "name": "b", "port": "/dev/ttyUSB5", "ready": False, "rssi_dbm": None},
    ]
    _, found = await served({**HEALTH, "modem": MODEM, "modems": modems})
    up = {labels: value for (name, labels), value in found.items() if name.endswith("_modem_up")}
    assert up == {
        (("modem", "a"), ("port", "/dev/ttyUSB2")): 1,
        (("modem", "b"), ("port", "/dev/ttyUSB5")): 0,
    }
    signal = [labels for (name, labels) in found if name.endswith("_modem_signal_dbm")]
    assert signal == [(("modem", "a"), ("port", "/dev/ttyUSB2"))]  # b reports none


async def test_other_paths_and_methods_are_refused() -> None:
    metrics = BridgeMetrics(lambda: HEALTH)
    async with MetricsServer(metrics, "127.0.0.1:0") as server:
        head, _ = await scrape(server.port, b"GET / HTTP/1.1\r\n\r\n")
        assert head.startswith("HTTP/1.0 404")
        head, _ = await scrape(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith("HTTP/1.0 405")
        # A client that connects and says nothing does not hold the server up.
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", server.port)
        head, _ = await scrape(server.port)
        assert head.startswith("HTTP/1.0 200")
    # ...nor its stop: the server closed the idle connection on the way out.
    assert await asyncio.wait_for(idle_reader.read(), 1) == b""
    idle.close()


async def test_listening_beyond_loopback_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.ops.metrics")
    async with MetricsServer(BridgeMetrics(lambda: HEALTH), "0.0.0.0:0"):
        pass
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "beyond this host" in warnings[0].getMessage()
    caplog.clear()
    async with MetricsServer(BridgeMetrics(lambda: HEALTH), "127.0.0.1:0"):
        pass
    assert not [record for record in caplog.records if record.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_listen_addresses(listen: str, expected: tuple[str, int]) -> None:
    assert listen_address(listen) == expected


@pytest.mark.parametrize(
    "listen", ["9108", "127.0.0.1", ":9108", "127.0.0.1:http", "127.0.0.1:70000"]
)
def test_bad_listen_addresses(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        listen_address(listen)


def test_loopback() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.0.1", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.1", "gw.example")] == [False] * 4


async def test_a_port_in_use_costs_the_metrics_only(caplog: pytest.LogCaptureFixture) -> None:
    holder = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = holder.sockets[0].getsockname()[1]
    try:
        async with MetricsServer(BridgeMetrics(lambda: HEALTH), f"127.0.0.1:{port}"):
            pass
    finally:
        holder.close()
        await holder.wait_closed()
    [record] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert f"cannot listen on 127.0.0.1:{port}" in record.getMessage()
