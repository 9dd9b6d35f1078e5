"""`make bench`: throughput, latency, CPU and memory of the daemon, against the targets.

Sections (`--only` picks some):
- line: 115200 baud + 50 ms, small GETs, 1 vs 32 in flight, against the line limit
  computed from the bytes the simulator actually saw on its pty. The line limit is a
  steady rate, so the targets compare it with the throughput while the pipeline is full
  (the first and last window of answers left out: the first round trip, when nothing
  has come back yet, and the drain); the whole-run figure is printed too.
- cpu: unthrottled simulator, no added latency: end-to-end req/s, daemon CPU per 1,000
  requests, added latency, side by side with aiocoap talking UDP straight to the server,
  and the floors of the two libraries the daemon is built on (`bench.floors`).
- scaling: in flight 1/8/64/256 (on both links), payload 16 B/200 B/4 KiB and 1/4/16
  remotes over 4 instances (on the 115200-baud link), daemon RSS idle and after 10,000
  requests.
- oscore: unthrottled simulator, small GETs, 64 in flight, plaintext then OSCORE to the
  same server: bytes per exchange on the line and daemon CPU per 1,000 requests
  (`bench.oscore`).
- constrained: the daemon alone capped at 10 % of one core (a cgroup CPU quota; needs
  root, skipped with a message otherwise): share of the line limit at 115200 baud +
  50 ms, and req/s on the unthrottled link (`bench.cpucap`).

Every case starts its own simulator and daemon (the link profile is a simulator
option); mosquitto and the CoAP server live for the whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpucap import CapUnavailable, cpu_capped
from bench.direct import run_direct
from bench.driver import RequestFactory, RunResult
from bench.floors import coap_floor, mqtt_floor
from bench.gateway import Gateway, LineUse, gateway
from bench.oscore import SECURE_ALIAS, exchange_cost
from bench.plot import plot_report, scaling_runs
from bench.report import Figure, Report, render_table
from bench.stack import (
    CoapServers,
    DaemonSettings,
    LinkProfile,
    Mosquitto,
    StackError,
    cpu_seconds,
    rss_bytes,
    sigterm_as_interrupt,
    started,
)
from bridge.tools.loopback import LoopbackError
from bridge.tools.oscore_contexts import write_pair

SECTIONS = ("line", "cpu", "scaling", "oscore", "constrained")
LINE_BYTES_PER_SECOND = 11_520  # 115200 baud, 8N1: 10 bit times per byte
LINE_PROFILE = LinkProfile(baud=115_200, latency_ms=50)
FAST_PROFILE = LinkProfile()
REMOTES = 16
# The constrained case: the daemon alone held to this share of one core.
CPU_CAP = 0.10
MIB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


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
        )


def get(path: str) -> RequestFactory:
    """Requests for one URI (a server alias and path)."""
    return lambda index, request_id: {"method": "GET", "uri": path, "timeout": 60}


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
    def gateway(self, profile: LinkProfile, *, oscore: bool = False) -> Iterator[Gateway]:
        self._cases += 1
        with gateway(
            self.workdir,
            self.mosquitto.port,
            profile,
            self.settings(oscore=oscore),
            str(self._cases),
            self.profile_dir,
        ) as case:
            yield case

    def measure(
        self, case: Gateway, label: str, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, LineUse]:
        result, line = case.measure(count, in_flight, make_request)
        self.report.runs[label] = {
            **result.summary(),
            "in_flight": in_flight,
            "line_bytes": {"to_modem": line.to_modem, "from_modem": line.from_modem},
        }
        if result.unanswered:
            print(f"  warning: {len(result.unanswered)} of {count} unanswered in {label}")
        return result, line

    def run(self, sections: Sequence[str]) -> None:
        runners: dict[str, Callable[[], None]] = {
            "line": self.line_bound,
            "cpu": self.cpu_bound,
            "scaling": self.scaling,
            "oscore": self.oscore,
            "constrained": self.constrained,
        }
        with started(self.mosquitto, self.servers):
            for section in sections:
                runners[section]()

    def line_bound(self) -> None:
        print(f"\n[line] {LINE_PROFILE.describe()}, small GETs", flush=True)
        small = get("coap://bench/small")
        with self.gateway(LINE_PROFILE) as case:
            case.warm_up(self.sizes.warmup, 8, small)
            baseline, base_line = self.measure(
                case, "line 1 in flight", self.sizes.line_baseline, 1, small
            )
            pipelined, pipe_line = self.measure(
                case, "line 32 in flight", self.sizes.line_pipelined, 32, small
            )
        add = self.report.add
        sustained: dict[int, float] = {}
        for in_flight, result, line in ((1, baseline, base_line), (32, pipelined, pipe_line)):
            name = f"{in_flight} in flight"
            limit = line_limit(result, line)
            sustained[in_flight] = result.sustained_throughput(in_flight)
            add(Figure("line", f"{name}: throughput, whole run", result.throughput, "req/s"))
            add(Figure("line", f"{name}: throughput, pipeline full", sustained[in_flight], "req/s"))
            add(Figure("line", f"{name}: p50 latency", result.latency_ms(0.5), "ms"))
            add(Figure("line", f"{name}: p99 latency", result.latency_ms(0.99), "ms"))
            add(
                Figure(
                    "line",
                    f"{name}: pty bytes/exchange (max dir)",
                    bytes_per_exchange(result, line),
                    "B",
                )
            )
            add(Figure("line", f"{name}: line limit", limit, "req/s"))
            add(Figure("line", f"{name}: whole run / line limit", result.throughput / limit, "x"))
            ratio = sustained[in_flight] / limit
            if in_flight == 32:
                add(Figure("line", f"{name}: of line limit", ratio, "x", ">= 0.95", ratio >= 0.95))
            else:
                add(Figure("line", f"{name}: of line limit", ratio, "x"))
        speedup = sustained[32] / sustained[1] if sustained[1] else float("nan")
        add(Figure("line", "32 vs 1 in flight speedup", speedup, "x", ">= 10", speedup >= 10))

    def cpu_bound(self) -> None:
        print(f"\n[cpu] {FAST_PROFILE.describe()}, small GETs", flush=True)
        small = get("coap://bench/small")
        count = self.sizes.cpu
        peers = {
            "daemon": 0,
            "simulator": 0,
            "mosquitto": self.mosquitto.pid,
            "coap server": self.servers.pid,
        }
        with self.gateway(FAST_PROFILE) as case:
            peers.update(daemon=case.daemon.pid, simulator=case.simulator.pid)
            case.warm_up(max(self.sizes.warmup, 500), 64, small)
            single, _ = self.measure(case, "cpu 1 in flight", self.sizes.cpu_single, 1, small)
            cpu_before = {name: cpu_seconds(pid) for name, pid in peers.items()}
            harness_before = _own_cpu()
            loaded, _ = self.measure(case, "cpu 64 in flight", count, 64, small)
            cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in peers.items()}
            cpu_used["harness (driver)"] = _own_cpu() - harness_before
        uri = f"coap://127.0.0.1:{self.servers.ports[0]}/small"
        direct_single = run_direct(uri, self.sizes.cpu_single, 1)
        direct_before = _own_cpu()
        direct = run_direct(uri, count, 64)
        # The CoAP library alone, in the harness process (its idle MQTT thread aside).
        direct_cpu = 1000 * (_own_cpu() - direct_before) / max(direct.answered, 1)
        mqtt_alone = mqtt_floor(self.workdir, self.mosquitto.port, count, 64)
        coap_alone = coap_floor(count, 64)
        self.report.runs["direct 1 in flight"] = direct_single.summary()
        self.report.runs["direct 64 in flight"] = direct.summary()
        self.report.runs["cpu seconds per 1000 (64 in flight)"] = {
            name: round(1000 * seconds / max(loaded.answered, 1), 3)
            for name, seconds in cpu_used.items()
        }
        add = self.report.add
        add(Figure("cpu", "end to end, 64 in flight", loaded.throughput, "req/s"))
        per_1000 = 1000 * cpu_used["daemon"] / max(loaded.answered, 1)
        add(Figure("cpu", "daemon CPU per 1,000 requests", per_1000, "s"))
        for name in ("simulator", "mosquitto", "coap server", "harness (driver)"):
            add(
                Figure(
                    "cpu",
                    f"{name} CPU per 1,000 requests",
                    1000 * cpu_used[name] / max(loaded.answered, 1),
                    "s",
                )
            )
        add(Figure("cpu", "p50 latency, 64 in flight", loaded.latency_ms(0.5), "ms"))
        add(Figure("cpu", "p50 latency, 1 in flight", single.latency_ms(0.5), "ms"))
        added = single.latency_ms(0.5) - direct_single.latency_ms(0.5)
        add(Figure("cpu", "p50 added latency vs direct, 1 in flight", added, "ms"))
        add(Figure("cpu", "direct aiocoap UDP, 64 in flight", direct.throughput, "req/s"))
        add(Figure("cpu", "direct aiocoap client CPU per 1,000 requests", direct_cpu, "s"))
        add(Figure("cpu", "floor: paho-mqtt alone, MQTT side, per 1,000", mqtt_alone, "s"))
        add(Figure("cpu", "floor: ModemCoap + aiocoap alone, per 1,000", coap_alone, "s"))
        floors = mqtt_alone + coap_alone
        over = per_1000 / floors if floors else float("nan")
        add(Figure("cpu", "daemon CPU / sum of the floors", over, "x", "<= 1.5", over <= 1.5))
        ratio = loaded.throughput / direct.throughput if direct.throughput else float("nan")
        add(Figure("cpu", "bridge / direct throughput", ratio, "x", ">= 0.9", ratio >= 0.9))

    def constrained(self) -> None:
        share = f"{CPU_CAP:.0%} of one core"
        print(f"\n[constrained] the daemon capped at {share}", flush=True)
        small = get("coap://bench/small")
        add = self.report.add
        for profile in (LINE_PROFILE, FAST_PROFILE):
            link = "line" if profile.baud else "fast"
            with self.gateway(profile) as case:
                case.warm_up(self.sizes.warmup, 8, small)
                try:
                    with cpu_capped(case.daemon.pid, CPU_CAP, link):
                        result, line = self.measure(
                            case, f"constrained {link}", self.sizes.constrained, 32, small
                        )
                except CapUnavailable as exc:
                    print(f"  skipped: {exc}", flush=True)
                    return
            name = f"{profile.describe()}, {share}, 32 in flight"
            add(Figure("constrained", f"{name}: throughput", result.throughput, "req/s"))
            add(Figure("constrained", f"{name}: not ok", result.sent - result.ok, "req"))
            if profile.baud:
                ratio = result.sustained_throughput(32) / line_limit(result, line)
                add(
                    Figure(
                        "constrained", f"{name}: of line limit", ratio, "x", ">= 0.9", ratio >= 0.9
                    )
                )

    def scaling(self) -> None:
        for profile in (LINE_PROFILE, FAST_PROFILE):
            print(f"\n[scaling] in flight, {profile.describe()}", flush=True)
            with self.gateway(profile) as case:
                small = get("coap://bench/small")
                case.warm_up(self.sizes.warmup, 8, small)
                for in_flight, count in self.sizes.inflight.items():
                    self._scaling_case(
                        case, profile, f"{in_flight} in flight", count, in_flight, small
                    )
        print(
            f"\n[scaling] payload and remotes, {LINE_PROFILE.describe()}, 32 in flight", flush=True
        )
        with self.gateway(LINE_PROFILE) as case:
            case.warm_up(self.sizes.warmup, 8, get("coap://bench/small"))
            for resource, count in self.sizes.payload.items():
                self._scaling_case(
                    case,
                    LINE_PROFILE,
                    f"payload {resource}",
                    count,
                    32,
                    get(f"coap://bench/{resource}"),
                )
            for remotes in (1, 4, 16):
                self._scaling_case(
                    case,
                    LINE_PROFILE,
                    f"{remotes} remotes",
                    self.sizes.remotes,
                    32,
                    spread(remotes, "small"),
                )
        self.memory()

    def oscore(self) -> None:
        print(f"\n[oscore] {FAST_PROFILE.describe()}, small GETs, 64 in flight", flush=True)
        requests = {
            "plaintext": get("coap://bench/small"),
            "OSCORE": get(f"coap://{SECURE_ALIAS}/small"),
        }
        with self.gateway(FAST_PROFILE, oscore=True) as case:
            for make_request in requests.values():
                case.warm_up(max(self.sizes.warmup, 500), 64, make_request)
            costs = {
                name: exchange_cost(
                    case, self.measure, f"oscore {name}", self.sizes.oscore, 64, make_request
                )
                for name, make_request in requests.items()
            }
        add = self.report.add
        for name, cost in costs.items():
            add(Figure("oscore", f"{name}: pty bytes/exchange to modem", cost.to_modem, "B"))
            add(Figure("oscore", f"{name}: pty bytes/exchange from modem", cost.from_modem, "B"))
            add(Figure("oscore", f"{name}: daemon CPU per 1,000", cost.daemon_cpu_per_1000, "s"))
            add(Figure("oscore", f"{name}: not ok", cost.not_ok, "req"))
        plain, protected = costs["plaintext"], costs["OSCORE"]
        extra = protected.line_bytes - plain.line_bytes
        add(Figure("oscore", "OSCORE adds, line bytes/exchange (both ways)", extra, "B"))
        cpu = protected.daemon_cpu_per_1000 / plain.daemon_cpu_per_1000
        add(Figure("oscore", "OSCORE / plaintext daemon CPU", cpu, "x"))

    def _scaling_case(
        self,
        case: Gateway,
        profile: LinkProfile,
        name: str,
        count: int,
        in_flight: int,
        make_request: RequestFactory,
    ) -> None:
        link = "line" if profile.baud else "fast"
        label = f"scaling {link} {name}"
        result, line = self.measure(case, label, count, in_flight, make_request)
        self.report.runs[label]["link"] = profile.describe()
        add = self.report.add
        add(Figure("scaling", f"{link} {name}: throughput", result.throughput, "req/s"))
        add(Figure("scaling", f"{link} {name}: p50 latency", result.latency_ms(0.5), "ms"))
        add(Figure("scaling", f"{link} {name}: p99 latency", result.latency_ms(0.99), "ms"))
        errors = result.sent - result.ok
        add(Figure("scaling", f"{link} {name}: not ok", errors, "req"))
        if name.endswith("remotes"):
            # Every command but a GTCOAPSEND: the OPEN/CLOSE churn (and a few polls).
            others = 1000 * line.other_commands / max(result.answered, 1)
            add(Figure("scaling", f"{link} {name}: OPEN/CLOSE per 1,000 requests", others, ""))
        if profile.baud:
            limit = line_limit(result, line)
            self.report.runs[label]["line_limit"] = round(limit, 1)
            ratio = result.throughput / limit if limit else float("nan")
            if name == f"{REMOTES} remotes":
                target = ">= 0.85"
                add(
                    Figure(
                        "scaling",
                        f"{link} {name}: of line limit",
                        ratio,
                        "x",
                        target,
                        ratio >= 0.85,
                    )
                )
            else:
                add(Figure("scaling", f"{link} {name}: of line limit", ratio, "x"))

    def memory(self) -> None:
        print(f"\n[scaling] daemon memory, {FAST_PROFILE.describe()}", flush=True)
        small = get("coap://bench/small")
        with self.gateway(FAST_PROFILE) as case:
            time.sleep(1.0)
            idle = rss_bytes(case.daemon.pid)
            case.warm_up(500, 64, small)
            warm = rss_bytes(case.daemon.pid)
            self.measure(case, "rss run", self.sizes.rss, 64, small)
            after = rss_bytes(case.daemon.pid)
        add = self.report.add
        add(Figure("scaling", "daemon RSS idle", idle / MIB, "MiB", "< 60", idle < 60 * MIB))
        add(Figure("scaling", "daemon RSS after 500 warm-up requests", warm / MIB, "MiB"))
        add(Figure("scaling", f"daemon RSS after +{self.sizes.rss:,} requests", after / MIB, "MiB"))
        growth = (after - warm) / MIB
        add(
            Figure(
                "scaling",
                f"RSS growth over {self.sizes.rss:,} requests",
                growth,
                "MiB",
                "< 5",
                growth < 5,
            )
        )


def bytes_per_exchange(result: RunResult, line: LineUse) -> float:
    """The busier direction of the pty, per answered request."""
    if not result.answered:
        return float("nan")
    return line.busier / result.answered


def line_limit(result: RunResult, line: LineUse) -> float:
    per_exchange = bytes_per_exchange(result, line)
    return LINE_BYTES_PER_SECOND / per_exchange if per_exchange > 0 else float("nan")


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs: a smoke check, not figures"
    )
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--json", type=Path, help="write the JSON report here (default bench/results/<time>.json)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="daemon log level (default info, as deployed)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the daemon under cProfile, one .prof file per case in DIR (inflates CPU)",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep configs and logs of every process"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    sections = [section for section in SECTIONS if not options.only or section in options.only]
    sigterm_as_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="coap-bridge-bench-"))
    bench = Bench(workdir, options)
    status = 0
    try:
        bench.run(sections)
    except KeyboardInterrupt:
        print("\ninterrupted; every process stopped", file=sys.stderr)
        status = 130
    except (StackError, LoopbackError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        status = 1
    finally:
        print(f"\nlogs: {workdir}" if options.keep_workdir or status else "", file=sys.stderr)
        if not options.keep_workdir and not status:
            shutil.rmtree(workdir, ignore_errors=True)
    if not bench.report.figures:
        return status or 1
    print("\n" + render_table(bench.report.figures))
    path = options.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = bench.report.as_json(options)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {path}")
    if scaling_runs(report):
        print(f"plot: {plot_report(report, path.with_suffix('.png'))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
