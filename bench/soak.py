"""`make soak`: many requests through the whole stack while faults are injected.

The link loses datagrams all along (simulator `--loss`); on a schedule keyed to the
number of requests sent, the modem reboots, garbage lands on the line, the broker
restarts, the modem is unplugged and a final result code goes missing. Every request
must get exactly one answer: a request without one after the final grace period is
*lost*, and the run fails. Duplicate answers and duplicate sends (the CoAP server
rendered one request id twice) are reported; at-least-once delivery allows them (a
broker restart makes the broker redeliver the requests in flight, a modem reset makes
the CoAP layer retransmit a CON from a new instance). Before the books close, a sentinel
request without `uri` is answered `invalid_request`: answers arrive in the order the
daemon published them, so every duplicate published until then has been counted.

`run_soak()` is the whole thing as a function, for tests (`tests/e2e/test_soak_short.py`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.direct import fetch
from bench.driver import RunResult
from bench.gateway import Gateway, gateway
from bench.stack import (
    CoapServers,
    DaemonSettings,
    LinkProfile,
    Mosquitto,
    StackError,
    sigterm_as_interrupt,
    started,
)
from bridge.tools.loopback import LoopbackError

# Bytes a confused modem might emit: a cut URC, binary noise, a stray final result.
# The daemon acks a request once its answer's PUBACK is back: an answer that reached the
# client just before the broker went may still have left its request unacknowledged.
REDELIVERY_MARGIN = 0.5
# The sentinel is answered without a CoAP exchange; a broker restart may delay it.
SENTINEL_TIMEOUT = 30.0

GARBAGE = b"\r\n+GTCOAPDATA: 1,4,DEAD\x00\xff\xfe garbage \r\nOK\r\n+GTCOAPDA"


@dataclass(frozen=True)
class Fault:
    at_fraction: float  # of the requests sent
    name: str
    inject: Callable[[Gateway, Mosquitto], None]
    # The broker redelivers the requests in flight (QoS 1), which are answered again.
    redelivers: bool = False


def _reboot(case: Gateway, broker: Mosquitto) -> None:
    case.simulator.control.reboot()


def _garbage(case: Gateway, broker: Mosquitto) -> None:
    case.simulator.control.garbage(GARBAGE, chunk_size=7, chunk_delay=0.01)


def _broker_restart(case: Gateway, broker: Mosquitto) -> None:
    broker.restart(down_seconds=2.0)


def _unplug(case: Gateway, broker: Mosquitto) -> None:
    case.simulator.control.unplug(3.0)


def _swallow_final(case: Gateway, broker: Mosquitto) -> None:
    case.simulator.control.swallow_final()


SCHEDULE = (
    Fault(0.15, "modem reboot", _reboot),
    Fault(0.30, "garbage on the line", _garbage),
    Fault(0.45, "broker restart (2 s down)", _broker_restart, redelivers=True),
    Fault(0.60, "modem unplugged for 3 s", _unplug),
    Fault(0.75, "final result code swallowed", _swallow_final),
)


@dataclass
class SoakReport:
    sent: int
    answered: int
    ok: int
    errors: dict[str, int]
    lost: list[str]
    duplicate_answers: int
    duplicate_sends: int
    server_renders: int
    faults: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    daemon_alive: bool = True
    # Requests sent when each fault was injected, by fault name.
    fault_positions: dict[str, int] = field(default_factory=dict)
    # (request id, kind) of each answer after a request's first; the ids whose repeat
    # differs in kind from their first answer; the repeated ids no redelivering fault
    # explains (not in flight while the broker went away, see `_unexplained_repeats`).
    repeats: list[tuple[str, str]] = field(default_factory=list)
    differing_repeats: list[str] = field(default_factory=list)
    unexplained_repeats: list[str] = field(default_factory=list)
    # The kind of the sentinel's answer ("invalid_request"), "" if it got none.
    sentinel: str = ""

    @property
    def passed(self) -> bool:
        return not self.lost and self.answered == self.sent and self.daemon_alive

    def render(self) -> str:
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items()))
        lines = [
            f"sent               {self.sent}",
            f"answered           {self.answered}",
            f"ok                 {self.ok}",
            f"errors             {sum(self.errors.values())}" + (f" ({errors})" if errors else ""),
            f"lost               {len(self.lost)}",
            f"duplicate answers  {self.duplicate_answers}"
            + (f" ({' '.join(i for i, _ in self.repeats[:20])})" if self.repeats else ""),
            f"duplicate sends    {self.duplicate_sends}",
            f"server renders     {self.server_renders}",
            f"elapsed            {self.elapsed:.1f} s",
            f"daemon alive       {'yes' if self.daemon_alive else 'NO'}",
            "faults             " + ("; ".join(self.faults) or "none"),
            f"sentinel           {self.sentinel or 'NO ANSWER'}",
        ]
        if self.differing_repeats:
            lines.append("differing repeats  " + " ".join(self.differing_repeats[:20]))
        if self.unexplained_repeats:
            lines.append("unexplained repeats " + " ".join(self.unexplained_repeats[:20]))
        if self.lost:
            lines.append("lost ids           " + " ".join(self.lost[:20]))
        return "\n".join(lines)


def _render_counts(server_port: int, tag: str) -> tuple[int, int]:
    """(renders of this run's ids, extra renders beyond one per id) from the server."""
    hits = json.loads(fetch(f"coap://127.0.0.1:{server_port}/hits"))
    repeated = {key: count for key, count in hits["repeated"].items() if key.startswith(tag)}
    return int(hits["total"]), sum(count - 1 for count in repeated.values())


def _unexplained_repeats(result: RunResult, windows: Sequence[tuple[float, float]]) -> list[str]:
    """The repeated ids that were not in flight during a redelivering fault: sent before
    it was over, first answered after it began (or REDELIVERY_MARGIN before)."""
    first = {answer.request_id: answer for answer in result.answers}

    def explained(request_id: str) -> bool:
        answer = first.get(request_id)
        if answer is None:
            return False
        sent_at = answer.received_at - answer.latency
        return any(
            sent_at <= end and answer.received_at >= began - REDELIVERY_MARGIN
            for began, end in windows
        )

    return sorted({request_id for request_id, _ in result.repeats if not explained(request_id)})


def _drive_with_faults(
    case: Gateway,
    broker: Mosquitto,
    requests: int,
    in_flight: int,
    request_timeout: float,
    grace: float,
    faults: Sequence[Fault],
) -> tuple[RunResult, str, dict[str, int], list[tuple[float, float]], str]:
    def soak_request(index: int, request_id: str) -> dict[str, object]:
        uri = f"coap://soak/soak?id={request_id}"
        return {"method": "GET", "uri": uri, "timeout": request_timeout}

    # A request the bridge has not answered well after its own timeout stops holding a
    # window slot, so a fault that swallows answers cannot stall the run.
    loop = case.driver.closed_loop(
        requests, in_flight, soak_request, overdue_after=request_timeout + 30
    )
    injected: dict[str, int] = {}
    redelivery_windows: list[tuple[float, float]] = []
    pending = list(faults)
    loop.start()
    while loop.sent < requests or pending:
        if pending and loop.sent >= pending[0].at_fraction * requests:
            fault = pending.pop(0)
            print(f"  [{loop.sent}/{requests}] {fault.name}", flush=True)
            began = time.perf_counter()
            fault.inject(case, broker)
            injected[fault.name] = loop.sent
            if fault.redelivers:
                redelivery_windows.append((began, time.perf_counter()))
        elif loop.wait(0.1):
            break
        case.daemon.check_alive()
    loop.wait(grace)
    # The main loop still listens while the sentinel (no `uri`) is answered.
    sentinel = case.driver.closed_loop(1, 1, lambda index, request_id: {"method": "GET"})
    settled = sentinel.run(SENTINEL_TIMEOUT)
    sentinel_kind = settled.answers[0].kind if settled.answers else ""
    return loop.result(), loop.tag, injected, redelivery_windows, sentinel_kind


def run_soak(
    requests: int = 10_000,
    *,
    in_flight: int = 32,
    profile: LinkProfile | None = None,
    faults: Sequence[Fault] = SCHEDULE,
    request_timeout: float = 30.0,
    grace: float = 60.0,
    log_level: str = "info",
    workdir: Path | None = None,
) -> SoakReport:
    """Start the whole stack, push `requests` through it with `faults`, tear it down."""
    profile = profile or LinkProfile(baud=115_200, latency_ms=50, loss=0.05, seed=7)
    own_workdir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="coap-bridge-soak-"))
    broker = Mosquitto(workdir)
    server = CoapServers(workdir, 1)
    settings = DaemonSettings(
        servers={"soak": server.ports[0]}, default_timeout=request_timeout, log_level=log_level
    )
    began = time.monotonic()
    daemon_alive = True
    try:
        with (
            started(broker, server),
            gateway(workdir, broker.port, profile, settings, "soak") as case,
        ):
            result, tag, injected, windows, sentinel = _drive_with_faults(
                case, broker, requests, in_flight, request_timeout, grace, faults
            )
            daemon_alive = case.daemon.alive()
            renders, duplicate_sends = _render_counts(server.ports[0], tag)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    first_kinds = {answer.request_id: answer.kind for answer in result.answers}
    return SoakReport(
        sent=result.sent,
        answered=result.answered,
        ok=result.ok,
        errors=dict(result.kinds()),
        lost=result.unanswered,
        duplicate_answers=result.duplicate_answers,
        duplicate_sends=duplicate_sends,
        server_renders=renders,
        faults=[f"{name} at {position}" for name, position in injected.items()],
        elapsed=time.monotonic() - began,
        daemon_alive=daemon_alive,
        fault_positions=injected,
        repeats=result.repeats,
        differing_repeats=[i for i, kind in result.repeats if first_kinds.get(i) != kind],
        unexplained_repeats=_unexplained_repeats(result, windows),
        sentinel=sentinel,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=10_000, help="requests to send (10000)")
    parser.add_argument("--in-flight", type=int, default=32, help="requests in flight (32)")
    parser.add_argument("--loss", type=float, default=0.05, help="datagram loss (0.05)")
    parser.add_argument("--baud", type=int, default=115_200, help="line rate, 0 = unthrottled")
    parser.add_argument("--latency-ms", type=float, default=50, help="one-way latency (50)")
    parser.add_argument("--no-faults", action="store_true", help="loss only, no scheduled faults")
    parser.add_argument("--log-level", default="info", help="daemon log level (info)")
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    profile = LinkProfile(
        baud=args.baud or None, latency_ms=args.latency_ms, loss=args.loss, seed=7
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.requests} requests, {args.in_flight} in flight, {profile.describe()}")
    try:
        report = run_soak(
            args.requests,
            in_flight=args.in_flight,
            profile=profile,
            faults=() if args.no_faults else SCHEDULE,
            log_level=args.log_level,
            workdir=args.workdir,
        )
    except KeyboardInterrupt:
        print("\ninterrupted; every process stopped", file=sys.stderr)
        return 130
    except (StackError, LoopbackError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    print("PASS" if report.passed else "FAIL: lost requests or daemon died")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
