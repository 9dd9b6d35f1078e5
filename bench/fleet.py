"""`make fleet`: a pool of gateways losing members mid-run, then a broker cluster losing a node.

Pool (mosquitto): N gateways (a simulator and a daemon process each) serve
`<pool_topic>/request` through `mqtt.shared_group`. Pooled GETs go out at a fixed rate
(MQTT 5 Response Topic); with republishing, a request unanswered after `--retry-after`
seconds is published again with the same id. Mid-run `--kill` gateways are SIGKILLed,
later `--freeze` others are SIGSTOPped (hung or partitioned) and stay so, and one
killed gateway is restarted. The run is done with and without republishing.

Printed per run: answered, republished, lost, duplicate answers, p50/p99 from the first
publish to the first answer, each gateway's share (the answers' `gateway` field).
Without republishing the lost requests are the ones stranded on dead members, split
by when they were published and set against the bound: a killed member strands at most
its Receive Maximum; a frozen one that plus its share of the load while the broker
waits out 1.5 pool keepalives.

Cluster (`bench.cluster.failover`): gateways on a 3-node aedes cluster listing every
node in `mqtt.hosts`; their node is killed under load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.driver import percentile
from bench.requester import (
    Requester,
    Sent,
    Target,
    duplicate_answers,
    run_open_loop,
    served_by,
)
from bench.stack import (
    CoapServers,
    Daemon,
    DaemonSettings,
    LinkProfile,
    Mosquitto,
    Simulator,
    daemon_config,
    sigterm_as_interrupt,
)

POOL_TOPIC = "coap-bridge/pool"
SHARED_GROUP = "fleet"
ONLINE_TIMEOUT = 180.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# A broker drops a silent client after 1.5 keepalives (MQTT 5 §3.1.2.10).
KEEPALIVE_GRACE = 1.5
GET_SMALL = {"method": "GET", "uri": "coap://bench/small", "timeout": 10}


@dataclass(frozen=True)
class FleetPlan:
    gateways: int = 10
    requests: int = 3000
    rate: float = 30.0
    kill: int = 3
    freeze: int = 2
    kill_at: float = 20.0
    freeze_at: float = 40.0
    restart_at: float = 60.0  # one killed gateway comes back then; < 0: none does
    retries: int = 3
    retry_after: float = 5.0
    drain: float = 30.0  # seconds allowed for answers after the last publish
    pool_keepalive: int = 10
    pool_receive_maximum: int = 8


def gateway_name(index: int) -> str:
    return f"fleet-{index + 1:02d}"


def gateway_config(
    pty_path: str, mqtt: dict[str, Any], coap_port: int, name: str, state_dir: Path | None = None
) -> str:
    """The bench daemon config for gateway `name`, with `mqtt` keys set on top (a value
    of None removes the key)."""
    config = yaml.safe_load(
        daemon_config(pty_path, 1883, DaemonSettings(servers={"bench": coap_port}))
    )
    config["gateway_id"] = name
    config["mqtt"].update(base_topic=f"coap-bridge/{name}", **mqtt)
    config["mqtt"] = {key: value for key, value in config["mqtt"].items() if value is not None}
    if state_dir is not None:
        config["state_dir"] = str(state_dir)
    return yaml.safe_dump(config)


@dataclass
class FleetGateway:
    name: str
    simulator: Simulator
    daemon: Daemon
    fate: str = "alive"  # alive | killed | frozen | restarted


@contextmanager
def gateways_running(
    workdir: Path, names: Sequence[str], mqtt: dict[str, Any], stack: ExitStack
) -> Iterator[list[FleetGateway]]:
    """A CoAP server and, per name, a simulator and a daemon; all stopped on leaving."""
    coap = CoapServers(workdir, 1)
    stack.callback(coap.stop)
    coap.start()
    gateways = []
    for name in names:
        simulator = Simulator(workdir, LinkProfile(), name)
        stack.callback(simulator.stop)
        simulator.start()
        daemon = Daemon(
            workdir, gateway_config(simulator.port_path, mqtt, coap.ports[0], name), name
        )
        stack.callback(stop_daemon, daemon)
        daemon.start()
        gateways.append(FleetGateway(name, simulator, daemon))
    yield gateways


def stop_daemon(daemon: Daemon) -> None:
    """Stop a daemon whatever state it is in (a frozen one cannot act on SIGTERM)."""
    if daemon.alive():
        os.kill(daemon.pid, signal.SIGCONT)
    daemon.stop()


@dataclass
class PoolReport:
    retries: int
    sent: int
    answered: int
    republished: int
    republishes: int
    lost: int
    duplicate_answers: int
    # Requests answered twice with different bodies: served twice (not from a cache).
    served_twice: int
    p50_ms: float
    p99_ms: float
    share: dict[str, int]
    fates: dict[str, str]
    lost_by_window: dict[str, int]
    bounds: dict[str, float]
    lost_at_s: list[float]  # when each lost request was first published, from the start
    # Seconds from the freeze until mosquitto dropped the frozen members (its log).
    frozen_dropped_after_s: float | None

    def lines(self) -> list[str]:
        mode = f"republishing (up to {self.retries} x)" if self.retries else "no republishing"
        rows = [
            f"-- pool, {mode}",
            f"sent {self.sent}, answered {self.answered}, lost {self.lost}, "
            f"duplicate answers {self.duplicate_answers} (served twice: {self.served_twice})",
            f"republished {self.republished} requests "
            f"({100 * self.republished / max(self.sent, 1):.1f}%, {self.republishes} publishes), "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms",
            "share: "
            + ", ".join(
                f"{name} {self.share.get(name, 0)} ({fate})"
                for name, fate in sorted(self.fates.items())
            ),
        ]
        if not self.retries:
            rows.append(
                f"stranded: {self.lost_by_window}; bounds: {self.bounds} (frozen members "
                f"dropped by the broker {self.frozen_dropped_after_s} s after the freeze)"
            )
        return rows


def pool_report(
    sent: list[Sent],
    gateways: list[FleetGateway],
    plan: FleetPlan,
    start: float,
    retries: int,
    frozen_dropped_after: float | None,
) -> PoolReport:
    answered = [request for request in sent if request.answers]
    latencies = [min(request.answers)[0] - request.first_sent for request in answered]
    # What the broker was told (1.5 keepalives), or how long it really took.
    freeze_window = max(KEEPALIVE_GRACE * plan.pool_keepalive, frozen_dropped_after or 0.0)
    windows: Counter[str] = Counter()
    for request in sent:
        if request.answers:
            continue
        at = request.first_sent - start
        if plan.kill and plan.kill_at - 2 <= at <= plan.kill_at + 1:
            windows["around the kill"] += 1
        elif plan.freeze and plan.freeze_at - 2 <= at <= plan.freeze_at + freeze_window + 1:
            windows["freeze window"] += 1
        else:
            windows["elsewhere"] += 1
    # While the frozen members are being waited out, the killed ones are gone: the load
    # is shared by the others and the frozen ones.
    restarted = 1 if plan.kill and 0 <= plan.restart_at <= plan.freeze_at else 0
    per_member = plan.rate / max(plan.gateways - plan.kill + restarted, 1)
    return PoolReport(
        retries=retries,
        sent=len(sent),
        answered=len(answered),
        republished=sum(1 for request in sent if request.publishes > 1),
        republishes=sum(request.publishes - 1 for request in sent),
        lost=len(sent) - len(answered),
        duplicate_answers=duplicate_answers(sent)[0],
        served_twice=duplicate_answers(sent)[1],
        p50_ms=1000 * percentile(latencies, 0.5),
        p99_ms=1000 * percentile(latencies, 0.99),
        share=served_by(sent),
        fates={gateway.name: gateway.fate for gateway in gateways},
        lost_by_window=dict(windows),
        lost_at_s=sorted(
            round(request.first_sent - start, 2) for request in sent if not request.answers
        ),
        frozen_dropped_after_s=frozen_dropped_after,
        bounds={
            "killed": plan.kill * plan.pool_receive_maximum,
            "frozen": round(
                plan.freeze * (plan.pool_receive_maximum + per_member * freeze_window), 1
            ),
        },
    )


def run_pool(workdir: Path, plan: FleetPlan, retries: int) -> PoolReport:
    with ExitStack() as stack:
        broker = Mosquitto(workdir)
        stack.callback(broker.stop)
        broker.start()
        mqtt = {
            "host": "127.0.0.1",
            "port": broker.port,
            "shared_group": SHARED_GROUP,
            "pool_topic": POOL_TOPIC,
            "pool_keepalive": plan.pool_keepalive,
            "pool_receive_maximum": plan.pool_receive_maximum,
        }
        names = [gateway_name(index) for index in range(plan.gateways)]
        gateways = stack.enter_context(gateways_running(workdir, names, mqtt, stack))
        requester = Requester(
            f"127.0.0.1:{broker.port}",
            mqtt5=True,
            reply_filter=f"{POOL_TOPIC}/response/#",
            retries=retries,
            retry_after=plan.retry_after,
        )
        stack.callback(requester.close)
        requester.wait_online(set(names), ONLINE_TIMEOUT)
        target = Target(f"{POOL_TOPIC}/request", f"{POOL_TOPIC}/response/fleet-{requester.tag}")
        killed = gateways[: plan.kill]
        frozen = gateways[plan.kill : plan.kill + plan.freeze]
        events = []
        if killed:
            events.append((plan.kill_at, lambda: _signal(killed, signal.SIGKILL, "killed")))
        frozen_at: list[float] = []

        def freeze() -> None:
            _signal(frozen, signal.SIGSTOP, "frozen")
            frozen_at.append(time.time())

        if frozen:
            events.append((plan.freeze_at, freeze))
        if killed and plan.restart_at >= 0:
            events.append((plan.restart_at, lambda: _restart(killed[0])))
        start = run_open_loop(
            requester,
            plan.requests,
            plan.rate,
            lambda index: (GET_SMALL, target),
            events=events,
            drain=plan.drain,
        )
        for gateway in gateways:
            if gateway.fate in ("alive", "restarted"):
                gateway.daemon.check_alive()
        dropped = _dropped_after(workdir / "mosquitto.log", frozen, frozen_at)
        return pool_report(requester.snapshot(), gateways, plan, start, retries, dropped)


def _dropped_after(
    log_path: Path, frozen: list[FleetGateway], frozen_at: list[float]
) -> float | None:
    """Seconds (whole, as mosquitto logs them) from the freeze until the broker dropped
    the last frozen member's pool connection for silence; None if it did not."""
    if not frozen or not frozen_at:
        return None
    drops = []
    for line in log_path.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition(": ")
        if "exceeded timeout" in text and any(f"{g.name}-pool " in text for g in frozen):
            drops.append(float(stamp))
    return round(max(drops) - frozen_at[0], 1) if len(drops) == len(frozen) else None


def _signal(gateways: list[FleetGateway], signum: signal.Signals, fate: str) -> None:
    for gateway in gateways:
        os.kill(gateway.daemon.pid, signum)
        gateway.fate = fate
    print(f"{fate}: {', '.join(gateway.name for gateway in gateways)}", flush=True)


def _restart(gateway: FleetGateway) -> None:
    gateway.daemon.stop()
    gateway.daemon.start()
    gateway.fate = "restarted"
    print(f"restarted: {gateway.name}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.cluster.failover import FailoverPlan, run_failover

    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = FleetPlan()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument(
        "--only", choices=("republish", "plain", "cluster"), help="run one part only"
    )
    args = parser.parse_args(argv)
    plan = FleetPlan(**{name: getattr(args, name) for name in asdict(defaults)})
    sigterm_as_interrupt()
    results: dict[str, Any] = {"plan": asdict(plan)}
    failed = False
    for part in ("republish", "plain", "cluster"):
        if args.only not in (None, part):
            continue
        with tempfile.TemporaryDirectory(prefix="fleet-") as workdir:
            if part == "cluster":
                failover = run_failover(Path(workdir), FailoverPlan())
                results["cluster"] = asdict(failover)
                print("\n".join(failover.lines()), flush=True)
                failed |= not failover.passed
                continue
            report = run_pool(Path(workdir), plan, plan.retries if part == "republish" else 0)
        results[part] = asdict(report)
        print("\n".join(report.lines()), flush=True)
        failed |= part == "republish" and report.lost > 0
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"fleet-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
