"""`make bench`, section modems: a daemon with two modems against one with one.

Small GETs, 64 in flight, every modem a simulator at 115200 baud + 50 ms: first a
daemon on one modem, then one on two (two simulator processes, a `modems:` list in its
config), the same request count each. The router places each request on the ready
modem with the least load, so two serial lines should carry close to twice what one
does: the target is 1.8 times, on the whole-run throughput. Each modem's share of the
requests is the share of the datagrams its simulator sent; the lines' limit is what the
bytes per exchange seen on each pty allow, summed over the lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.driver import RunResult
from bench.gateway import LineUse, send_shares
from bench.harness import LINE_BYTES_PER_SECOND, LINE_PROFILE, Bench, get
from bench.report import Figure

IN_FLIGHT = 64
TARGET = 1.8


def modems(bench: Bench) -> None:
    print(
        f"\n[modems] 1 vs 2 modems, each {LINE_PROFILE.describe()}, small GETs, "
        f"{IN_FLIGHT} in flight",
        flush=True,
    )
    add = bench.report.add
    results: dict[int, RunResult] = {}
    for count in (1, 2):
        with bench.gateway(LINE_PROFILE, modems=count) as case:
            # Each modem by name: waits until it is up (the daemon is online with the
            # first) and opens its CoAP instance before the measured run.
            for name in case.modem_names:
                case.warm_up(bench.sizes.warmup, 8, get("coap://bench/small", modem=name))
            result, lines = bench.measure_lines(
                case, f"modems {count}", bench.sizes.modems, IN_FLIGHT, get("coap://bench/small")
            )
            names = case.modem_names
        results[count] = result
        label = f"{count} modem{'s' if count > 1 else ''}"
        add(Figure("modems", f"{label}: throughput, whole run", result.throughput, "req/s"))
        sustained = result.sustained_throughput(IN_FLIGHT)
        add(Figure("modems", f"{label}: throughput, pipeline full", sustained, "req/s"))
        add(Figure("modems", f"{label}: p50 latency", result.latency_ms(0.5), "ms"))
        add(Figure("modems", f"{label}: p99 latency", result.latency_ms(0.99), "ms"))
        add(Figure("modems", f"{label}: not ok", result.sent - result.ok, "req"))
        limit = lines_limit(lines)
        add(Figure("modems", f"{label}: line limit (all lines)", limit, "req/s"))
        add(Figure("modems", f"{label}: pipeline full / line limit", sustained / limit, "x"))
        if count > 1:
            for name, share in zip(names, send_shares(lines), strict=True):
                add(Figure("modems", f"{label}: modem {name}'s share of datagrams", share, "x"))
    one, two = results[1], results[2]
    whole = speedup(one.throughput, two.throughput)
    add(Figure("modems", "2 vs 1 modem, whole run", whole, "x", f">= {TARGET:g}", whole >= TARGET))
    full = speedup(one.sustained_throughput(IN_FLIGHT), two.sustained_throughput(IN_FLIGHT))
    add(Figure("modems", "2 vs 1 modem, pipeline full", full, "x"))


def speedup(base: float, faster: float) -> float:
    """`faster` over `base`; NaN (a FAIL) when the base measured nothing."""
    return faster / base if base > 0 else float("nan")


def lines_limit(lines: Sequence[LineUse]) -> float:
    """Exchanges per second the lines could carry together, each at the bytes per
    exchange (busier direction) seen on it; a line that sent nothing adds nothing."""
    limit = sum(LINE_BYTES_PER_SECOND * line.sends / line.busier for line in lines if line.busier)
    return limit if limit > 0 else float("nan")
