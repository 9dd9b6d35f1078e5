"""`make bench`, sections line, cpu, scaling, oscore and constrained (see `bench.run`):
each a function of the `Bench` that runs its cases and adds its figures to the report."""

from __future__ import annotations

import time

from bench.cpucap import CapUnavailable, cpu_capped
from bench.direct import run_direct
from bench.driver import RequestFactory
from bench.floors import coap_floor, mqtt_floor
from bench.gateway import Gateway
from bench.harness import (
    CPU_CAP,
    FAST_PROFILE,
    LINE_PROFILE,
    MIB,
    REMOTES,
    Bench,
    bytes_per_exchange,
    get,
    line_limit,
    own_cpu,
    spread,
)
from bench.oscore import SECURE_ALIAS, exchange_cost
from bench.report import Figure
from bench.stack import LinkProfile, cpu_seconds, rss_bytes


def line_bound(bench: Bench) -> None:
    print(f"\n[line] {LINE_PROFILE.describe()}, small GETs", flush=True)
    small = get("coap://bench/small")
    with bench.gateway(LINE_PROFILE) as case:
        case.warm_up(bench.sizes.warmup, 8, small)
        baseline, base_line = bench.measure(
            case, "line 1 in flight", bench.sizes.line_baseline, 1, small
        )
        pipelined, pipe_line = bench.measure(
            case, "line 32 in flight", bench.sizes.line_pipelined, 32, small
        )
    add = bench.report.add
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


def cpu_bound(bench: Bench) -> None:
    print(f"\n[cpu] {FAST_PROFILE.describe()}, small GETs", flush=True)
    small = get("coap://bench/small")
    count = bench.sizes.cpu
    peers = {
        "daemon": 0,
        "simulator": 0,
        "mosquitto": bench.mosquitto.pid,
        "coap server": bench.servers.pid,
    }
    with bench.gateway(FAST_PROFILE) as case:
        peers.update(daemon=case.daemon.pid, simulator=case.simulator.pid)
        case.warm_up(max(bench.sizes.warmup, 500), 64, small)
        single, _ = bench.measure(case, "cpu 1 in flight", bench.sizes.cpu_single, 1, small)
        cpu_before = {name: cpu_seconds(pid) for name, pid in peers.items()}
        harness_before = own_cpu()
        loaded, _ = bench.measure(case, "cpu 64 in flight", count, 64, small)
        cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in peers.items()}
        cpu_used["harness (driver)"] = own_cpu() - harness_before
    uri = f"coap://127.0.0.1:{bench.servers.ports[0]}/small"
    direct_single = run_direct(uri, bench.sizes.cpu_single, 1)
    direct_before = own_cpu()
    direct = run_direct(uri, count, 64)
    # The CoAP library alone, in the harness process (its idle MQTT thread aside).
    direct_cpu = 1000 * (own_cpu() - direct_before) / max(direct.answered, 1)
    mqtt_alone = mqtt_floor(bench.workdir, bench.mosquitto.port, count, 64)
    coap_alone = coap_floor(count, 64)
    bench.report.runs["direct 1 in flight"] = direct_single.summary()
    bench.report.runs["direct 64 in flight"] = direct.summary()
    bench.report.runs["cpu seconds per 1000 (64 in flight)"] = {
        name: round(1000 * seconds / max(loaded.answered, 1), 3)
        for name, seconds in cpu_used.items()
    }
    add = bench.report.add
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


def scaling(bench: Bench) -> None:
    for profile in (LINE_PROFILE, FAST_PROFILE):
        print(f"\n[scaling] in flight, {profile.describe()}", flush=True)
        with bench.gateway(profile) as case:
            small = get("coap://bench/small")
            case.warm_up(bench.sizes.warmup, 8, small)
            for in_flight, count in bench.sizes.inflight.items():
                _scaling_case(
                    bench, case, profile, f"{in_flight} in flight", count, in_flight, small
                )
    print(f"\n[scaling] payload and remotes, {LINE_PROFILE.describe()}, 32 in flight", flush=True)
    with bench.gateway(LINE_PROFILE) as case:
        case.warm_up(bench.sizes.warmup, 8, get("coap://bench/small"))
        for resource, count in bench.sizes.payload.items():
            _scaling_case(
                bench,
                case,
                LINE_PROFILE,
                f"payload {resource}",
                count,
                32,
                get(f"coap://bench/{resource}"),
            )
        for remotes in (1, 4, 16):
            _scaling_case(
                bench,
                case,
                LINE_PROFILE,
                f"{remotes} remotes",
                bench.sizes.remotes,
                32,
                spread(remotes, "small"),
            )
    memory(bench)


def _scaling_case(
    bench: Bench,
    case: Gateway,
    profile: LinkProfile,
    name: str,
    count: int,
    in_flight: int,
    make_request: RequestFactory,
) -> None:
    link = "line" if profile.baud else "fast"
    label = f"scaling {link} {name}"
    result, line = bench.measure(case, label, count, in_flight, make_request)
    bench.report.runs[label]["link"] = profile.describe()
    add = bench.report.add
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
        bench.report.runs[label]["line_limit"] = round(limit, 1)
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


def memory(bench: Bench) -> None:
    print(f"\n[scaling] daemon memory, {FAST_PROFILE.describe()}", flush=True)
    small = get("coap://bench/small")
    with bench.gateway(FAST_PROFILE) as case:
        time.sleep(1.0)
        idle = rss_bytes(case.daemon.pid)
        case.warm_up(500, 64, small)
        warm = rss_bytes(case.daemon.pid)
        bench.measure(case, "rss run", bench.sizes.rss, 64, small)
        after = rss_bytes(case.daemon.pid)
    add = bench.report.add
    add(Figure("scaling", "daemon RSS idle", idle / MIB, "MiB", "< 60", idle < 60 * MIB))
    add(Figure("scaling", "daemon RSS after 500 warm-up requests", warm / MIB, "MiB"))
    add(Figure("scaling", f"daemon RSS after +{bench.sizes.rss:,} requests", after / MIB, "MiB"))
    growth = (after - warm) / MIB
    add(
        Figure(
            "scaling",
            f"RSS growth over {bench.sizes.rss:,} requests",
            growth,
            "MiB",
            "< 5",
            growth < 5,
        )
    )


def oscore(bench: Bench) -> None:
    print(f"\n[oscore] {FAST_PROFILE.describe()}, small GETs, 64 in flight", flush=True)
    requests = {
        "plaintext": get("coap://bench/small"),
        "OSCORE": get(f"coap://{SECURE_ALIAS}/small"),
    }
    with bench.gateway(FAST_PROFILE, oscore=True) as case:
        for make_request in requests.values():
            case.warm_up(max(bench.sizes.warmup, 500), 64, make_request)
        costs = {
            name: exchange_cost(
                case, bench.measure, f"oscore {name}", bench.sizes.oscore, 64, make_request
            )
            for name, make_request in requests.items()
        }
    add = bench.report.add
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


def constrained(bench: Bench) -> None:
    share = f"{CPU_CAP:.0%} of one core"
    print(f"\n[constrained] the daemon capped at {share}", flush=True)
    small = get("coap://bench/small")
    add = bench.report.add
    for profile in (LINE_PROFILE, FAST_PROFILE):
        link = "line" if profile.baud else "fast"
        with bench.gateway(profile) as case:
            case.warm_up(bench.sizes.warmup, 8, small)
            try:
                with cpu_capped(case.daemon.pid, CPU_CAP, link):
                    result, line = bench.measure(
                        case, f"constrained {link}", bench.sizes.constrained, 32, small
                    )
            except CapUnavailable as exc:
                print(f"  skipped: {exc}", flush=True)
                return
        name = f"{profile.describe()}, {share}, 32 in flight"
        add(Figure("constrained", f"{name}: throughput", result.throughput, "req/s"))
        add(Figure("constrained", f"{name}: not ok", result.sent - result.ok, "req"))
        if profile.baud:
            ratio = result.sustained_throughput(32) / line_limit(result, line)
            add(Figure("constrained", f"{name}: of line limit", ratio, "x", ">= 0.9", ratio >= 0.9))
