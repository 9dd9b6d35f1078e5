"""What every section of `make bench` shares: request counts, the link profiles, the
long-lived broker and CoAP servers, a gateway per case and the report it fills."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.driver import RequestFactory, RunResult
from bench.gateway import Gateway, LineUse, gateway, total
from bench.oscore import SECURE_ALIAS
from bench.report import Report
from bench.stack import CoapServers, DaemonSettings, LinkProfile, Mosquitto
from bridge.tools.oscore_contexts import write_pair

LINE_BYTES_PER_SECOND = 11_520  # 115200 baud, 8N1: 10 bit times per byte
LINE_PROFILE = LinkProfile(baud=115_200, latency_ms=50)
FAST_PROFILE = LinkProfile()
REMOTES = 16
# The constrained case: the daemon alone held to this share of one core.
CPU_CAP = 0.10
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """Request counts per case; `--quick` divides the measuring runs, not the targets."""

    warmup: int
    line_baseline: int
    line_pipelined: int
    cpu: int
    cpu_single: int
    inflight: dict[int, int]
    payload: dict[str, int]
    remotes: int
    rss: int
    oscore: int
    constrained: int
    modems: int

    @staticmethod
    def for_mode(quick: bool) -> Sizes:
        if quick:
            return Sizes(
                warmup=20,
                line_baseline=15,
                line_pipelined=200,
                cpu=1000,
                cpu_single=100,
                inflight={1: 15, 8: 80, 64: 300, 256: 600},
                payload={"p16": 200, "p200": 100, "p4k": 8},
                remotes=200,
                rss=2000,
                oscore=1000,
                constrained=150,
                modems=400,
            )
        return Sizes(
            warmup=100,
            line_baseline=80,
            line_pipelined=1500,
            cpu=6000,
            cpu_single=400,
            inflight={1: 60, 8: 400, 64: 1500, 256: 3000},
            payload={"p16": 1000, "p200": 400, "p4k": 30},
            remotes=1000,
            rss=10_000,
            oscore=6000,
            constrained=1000,
            modems=2000,
        )


def get(path: str, *, modem: str | None = None) -> RequestFactory:
    """Requests for one URI (a server alias and path), on the modem named if one is."""
    placed = {} if modem is None else {"modem": modem}
    return lambda index, request_id: {"method": "GET", "uri": path, "timeout": 60, **placed}


def spread(remotes: int, resource: str) -> RequestFactory:
    """Requests cycling over `remotes` server aliases: the pool-churn pattern."""
    return lambda index, request_id: {
        "method": "GET",
        "uri": f"coap://r{index % remotes}/{resource}",
        "timeout": 60,
    }


class Bench:
    def __init__(self, workdir: Path, options: argparse.Namespace) -> None:
        self.workdir = workdir
        self.sizes = Sizes.for_mode(options.quick)
        self.log_level = options.log_level
        self.profile_dir: Path | None = options.profile
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.report = Report()
        self.mosquitto = Mosquitto(workdir)
        self.contexts = write_pair(workdir / "oscore")
        self.servers = CoapServers(workdir, REMOTES, oscore_context=self.contexts.server)
        self._cases = 0

    def settings(self, *, oscore: bool = False) -> DaemonSettings:
        """`bench` is the one-remote alias; r0..r15 the pool-churn remotes; `secure` the
        `bench` server with OSCORE (only where asked: it locks the context)."""
        aliases: dict[str, int] = {"bench": self.servers.ports[0]}
        aliases.update({f"r{index}": port for index, port in enumerate(self.servers.ports)})
        contexts = {}
        if oscore:
            aliases[SECURE_ALIAS] = self.servers.ports[0]
            contexts[SECURE_ALIAS] = self.contexts.client
        return DaemonSettings(servers=aliases, oscore=contexts, log_level=self.log_level)

    @contextlib.contextmanager
    def gateway(
        self, profile: LinkProfile, *, oscore: bool = False, modems: int = 1
    ) -> Iterator[Gateway]:
        self._cases += 1
        with gateway(
            self.workdir,
            self.mosquitto.port,
            profile,
            self.settings(oscore=oscore),
            str(self._cases),
            self.profile_dir,
            modems=modems,
        ) as case:
            yield case

    def measure(
        self, case: Gateway, label: str, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, LineUse]:
        result, lines = self.measure_lines(case, label, count, in_flight, make_request)
        return result, total(lines)

    def measure_lines(
        self, case: Gateway, label: str, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, list[LineUse]]:
        """A measured run recorded under `label`, with the line use of each modem."""
        result, lines = case.measure_lines(count, in_flight, make_request)
        line = total(lines)
        self.report.runs[label] = {
            **result.summary(),
            "in_flight": in_flight,
            "line_bytes": {"to_modem": line.to_modem, "from_modem": line.from_modem},
        }
        if len(lines) > 1:
            self.report.runs[label]["modems"] = {
                name: {"to_modem": use.to_modem, "from_modem": use.from_modem, "sends": use.sends}
                for name, use in zip(case.modem_names, lines, strict=True)
            }
        if result.unanswered:
            print(f"  warning: {len(result.unanswered)} of {count} unanswered in {label}")
        return result, lines


def bytes_per_exchange(result: RunResult, line: LineUse) -> float:
    """The busier direction of the pty, per answered request."""
    if not result.answered:
        return float("nan")
    return line.busier / result.answered


def line_limit(result: RunResult, line: LineUse) -> float:
    per_exchange = bytes_per_exchange(result, line)
    return LINE_BYTES_PER_SECOND / per_exchange if per_exchange > 0 else float("nan")


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system
