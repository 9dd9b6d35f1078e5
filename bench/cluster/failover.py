"""Broker failover under load on the aedes cluster (part of `make fleet`, and a test).

Gateways list every node in `mqtt.hosts` (MQTT 3.1.1: aedes has no MQTT 5) and start
on the first, node 1. A requester on node 3 sends GETs to the gateways' own request
topics at a fixed rate; after `kill_after` requests node 1 is SIGKILLed and stays
dead. Every request must be answered, within `deadline` seconds of the kill for those
published before it; duplicates (a request redelivered because node 1 died before it
recorded the acknowledgement) are counted.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import AedesCluster
from bench.fleet import GET_SMALL, ONLINE_TIMEOUT, gateway_name, gateways_running
from bench.requester import Requester, Target, duplicate_answers, run_open_loop, served_by

# Seconds a moved gateway's health may take to name its new node (published on connect,
# at most one per health_min_gap of 1 s).
HEALTH_AFTER_FAILOVER = 10.0


@dataclass(frozen=True)
class FailoverPlan:
    gateways: int = 2
    requests: int = 120
    rate: float = 10.0
    kill_after: int = 30
    deadline: float = 20.0


@dataclass
class FailoverReport:
    sent: int
    answered: int
    lost: int
    duplicate_answers: int
    # Requests answered twice with different bodies: served twice (not from a cache).
    served_twice: int
    worst_wait_after_kill_s: float
    share: dict[str, int]
    deadline: float
    killed_node: str
    # The node each gateway's latest health names (mqtt.broker) at the end.
    brokers_after: dict[str, str]

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.worst_wait_after_kill_s <= self.deadline
            and self.killed_node not in self.brokers_after.values()
        )

    def lines(self) -> list[str]:
        return [
            "-- aedes cluster (3 nodes over Redis), the gateways' node killed",
            f"sent {self.sent} through node 3, answered {self.answered}, lost {self.lost}, "
            f"duplicate answers {self.duplicate_answers} (served twice: {self.served_twice})",
            f"longest wait for an answer after the kill: {self.worst_wait_after_kill_s:.1f} s "
            f"(limit {self.deadline:g} s); share: {self.share}",
            f"killed {self.killed_node}; the gateways ended on {self.brokers_after}",
        ]


def run_failover(workdir: Path, plan: FailoverPlan) -> FailoverReport:
    with ExitStack() as stack:
        cluster = stack.enter_context(AedesCluster(workdir / "cluster"))
        mqtt = {"host": None, "port": None, "protocol": "3.1.1", "hosts": cluster.hosts}
        names = [gateway_name(index) for index in range(plan.gateways)]
        stack.enter_context(gateways_running(workdir, names, mqtt, stack))
        requester = Requester(
            cluster.nodes[2].address, mqtt5=False, reply_filter="coap-bridge/+/response/#"
        )
        stack.callback(requester.close)
        requester.wait_online(set(names), ONLINE_TIMEOUT)
        targets = [
            Target(f"coap-bridge/{name}/request", f"coap-bridge/{name}/response/{requester.tag}")
            for name in names
        ]
        killed_at: list[float] = []

        def kill_node1() -> None:
            cluster.nodes[0].kill()
            killed_at.append(time.monotonic())

        start = run_open_loop(
            requester,
            plan.requests,
            plan.rate,
            lambda index: (GET_SMALL, targets[index % len(targets)]),
            events=[(plan.kill_after / plan.rate, kill_node1)],
            drain=plan.deadline + 10,
        )
        sent = requester.snapshot()
        kill = killed_at[0] if killed_at else start
        answered = [request for request in sent if request.answers]
        waits = [
            min(request.answers)[0] - max(kill, request.first_sent)
            for request in answered
            if request.first_sent <= kill + plan.deadline
        ]
        killed_node = cluster.nodes[0].address

        def brokers_named() -> dict[str, str]:
            return {
                name: str(requester.health.get(name, {}).get("mqtt", {}).get("broker"))
                for name in names
            }

        # A gateway publishes its health on each connect, at most one per health_min_gap,
        # so the one naming the new node can land after the last answer: wait for it. A
        # live copy can also go missing between the cluster's nodes (seen under load: the
        # gateway's node acknowledged it, the requester's node never delivered it), so
        # the retained copies are read again once a second meanwhile.
        deadline = time.monotonic() + HEALTH_AFTER_FAILOVER
        reread = time.monotonic() + 1.0
        while killed_node in brokers_named().values() and time.monotonic() < deadline:
            if time.monotonic() >= reread:
                requester.reread_health()
                reread += 1.0
            time.sleep(0.05)
        brokers_after = brokers_named()
        return FailoverReport(
            sent=len(sent),
            answered=len(answered),
            lost=len(sent) - len(answered),
            duplicate_answers=duplicate_answers(sent)[0],
            served_twice=duplicate_answers(sent)[1],
            worst_wait_after_kill_s=round(max(waits, default=0.0), 2),
            share=served_by(sent),
            deadline=plan.deadline,
            killed_node=killed_node,
            brokers_after=brokers_after,
        )
