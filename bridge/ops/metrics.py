"""Prometheus metrics (opt-in, `metrics.listen`): `GET /metrics` on the asyncio loop.

The series are built at scrape time from the health object, so they follow whatever
health reports (one label set per entry of `modems`, or the single `modem`), plus two
the health object cannot carry: answers by outcome (`response` or the error kind) and
the latency from a request's arrival to its first answer. Every name starts with
`mqtt_coap_bridge_`. The HTTP side is a minimal HTTP/1.0 responder (one request per
connection), so a scrape never touches state from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from bridge.config import listen_address

log = logging.getLogger(__name__)

PREFIX: Final = "mqtt_coap_bridge"
_MAX_REQUEST_HEAD: Final = 8192
_READ_TIMEOUT: Final = 5.0

# health.counters member -> (series, help); counters only ever grow.
_COUNTERS: Final = {
    "requests": ("requests", "Requests taken from MQTT (valid or not)"),
    "responses": ("responses", "Answers published that carried a CoAP response"),
    "errors": ("errors", "Answers published that were error objects"),
    "timeouts": ("timeouts", "Error objects of kind timeout"),
    "dedupe_hits": ("dedupe_hits", "Redelivered requests answered without a new CoAP exchange"),
    "dropped_queued": ("answers_dropped", "Answers dropped from the full publish queue"),
}
# health.coap member -> (series, help); gauges.
_COAP_GAUGES: Final = {
    "in_flight": ("in_flight", "CoAP requests in flight"),
    "waiting": ("waiting", "Requests received and waiting for a slot"),
    "observations": ("observations", "Observations being streamed"),
    "instances_open": ("instances_open", "Modem CoAP client instances open"),
}
# modem member -> (series, help, kind); booleans become 0/1.
_MODEM_SERIES: Final = {
    "ready": ("modem_up", "1 when the modem is ready to carry requests", "gauge"),
    "registered": ("modem_registered", "1 when the modem is registered on the network", "gauge"),
    "rssi_dbm": ("modem_signal_dbm", "Received signal strength in dBm", "gauge"),
    "resets": ("modem_resets", "Modem resets and port losses seen", "counter"),
    "instances_open": ("modem_instances_open", "CoAP client instances open", "gauge"),
    "at_commands": ("at_commands", "AT commands written to the modem", "counter"),
    "at_timeouts": ("at_timeouts", "AT commands that got no final result in time", "counter"),
    "bytes_in": ("line_bytes_in", "Bytes read from the modem's serial line", "counter"),
    "bytes_out": ("line_bytes_out", "Bytes written to the modem's serial line", "counter"),
}
# Seconds from a request's arrival to its first answer: a LAN CoAP round trip is a few
# ms, an LTE one 100-500 ms, and a CoAP exchange with retransmissions up to ~90 s.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _modems(health: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    modems = health.get("modems")
    if isinstance(modems, list) and modems:
        return [modem for modem in modems if isinstance(modem, Mapping)]
    modem = health.get("modem")
    return [modem] if isinstance(modem, Mapping) else []


class _HealthCollector:
    """A prometheus collector reading one health snapshot per scrape."""

    def __init__(self, health: Callable[[], Mapping[str, Any]]) -> None:
        self._health = health

    def describe(self) -> list[Metric]:
        return []  # families depend on what health reports

    def collect(self) -> Iterator[Metric]:
        health = self._health()
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 while the bridge is online")
        up.add_metric([], 1.0 if health.get("state") == "online" else 0.0)
        yield up
        uptime = _number(health.get("uptime_s"))
        if uptime is not None:
            yield GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since start", uptime)
        counters = health.get("counters", {})
        for key, (name, text) in _COUNTERS.items():
            value = _number(counters.get(key))
            if value is not None:
                yield CounterMetricFamily(f"{PREFIX}_{name}", text, value)
        queued = _number(counters.get("queued"))
        if queued is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_answers_queued", "Answers waiting for the broker", queued
            )
        coap = health.get("coap", {})
        for key, (name, text) in _COAP_GAUGES.items():
            value = _number(coap.get(key))
            if value is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", text, value)
        yield from self._modem_families(_modems(health))

    def _modem_families(self, modems: list[Mapping[str, Any]]) -> Iterator[Metric]:
        for key, (name, text, kind) in _MODEM_SERIES.items():
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["modem", "port"])
            else:
                family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["modem", "port"])
            for index, modem in enumerate(modems):
                value = _number(modem.get(key))
                if value is not None:
                    labels = [str(modem.get("name", index)), str(modem.get("port", ""))]
                    family.add_metric(labels, value)
            if family.samples:
                yield family


class BridgeMetrics:
    """The registry of one daemon: health-derived series plus outcomes and latency."""

    def __init__(self, health: Callable[[], Mapping[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HealthCollector(health))
        self._answers = Counter(
            f"{PREFIX}_answers",
            "First answers to requests, by outcome (response or the error kind)",
            ["outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "From a request's arrival to its first answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def answered(self, outcome: str, seconds: float) -> None:
        """Count one request's first answer (the front's `on_answer` hook)."""
        self._answers.labels(outcome).inc()
        self._latency.observe(seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type, in the format `accept` asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsServer:
    """`GET /metrics` on `listen`, served by the running loop until the context exits."""

    def __init__(self, metrics: BridgeMetrics, listen: str) -> None:
        self._metrics = metrics
        self._host, self._port = listen_address(listen)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one chosen for port 0)."""
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> MetricsServer:
        if not is_loopback(self._host):
            log.warning(
                "metrics served on %s:%d, beyond this host: anyone who reaches it can read "
                "the bridge's health; bind 127.0.0.1 and scrape locally, or firewall it",
                self._host,
                self._port,
            )
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as exc:
            # The bridge serves on without metrics rather than not at all.
            log.error(
                "metrics not served: cannot listen on %s:%d (%s); fix metrics.listen and reload",
                self._host,
                self._port,
                exc.strerror or exc,
            )
            return self
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            # Python 3.11's wait_closed does not wait for open connections: end them.
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = self._answer(head)
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        lines = head[:_MAX_REQUEST_HEAD].decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if path != "/metrics":
            return "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        accept = next(
            (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("accept:")),
            "",
        )
        body, content_type = self._metrics.exposition(accept)
        return "200 OK", content_type, b"" if method == "HEAD" else body
