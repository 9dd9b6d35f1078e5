"""The dedupe journal across a crash: a daemon with `state_dir` SIGKILLed under a load
of POSTs (some answered, some in flight) and restarted, on a real mosquitto, the
simulator and a CoAP server that counts every POST per request id."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bench.direct import fetch
from bench.fleet import gateway_config
from bench.requester import Requester, Target, run_open_loop
from bench.stack import CoapServers, Daemon, LinkProfile, Mosquitto, Simulator
from bridge.mqtt.journal import FILE_NAME
from tests.fleet.peers import FleetPeer

pytestmark = pytest.mark.timeout(300)

GATEWAY = "crash-gw"
REQUESTS = 150
RATE = 30.0
KILL_AT = 2.5  # seconds into the load


def journal_at_crash(state_dir: Path, copy_to: Path) -> tuple[set[str], set[str]]:
    """(answered ids, ids marked in flight) in the journal as the killed process left it."""
    copy_to.mkdir()
    for path in state_dir.iterdir():
        shutil.copy(path, copy_to / path.name)
    with sqlite3.connect(copy_to / FILE_NAME) as db:
        answered = {row[0] for row in db.execute("SELECT id FROM answers")}
        marked = {row[0] for row in db.execute("SELECT id FROM in_flight")}
    db.close()
    return answered, marked


def hits(coap_port: int) -> dict[str, Any]:
    return dict(json.loads(fetch(f"coap://127.0.0.1:{coap_port}/hits")))


def test_a_crash_replays_only_what_was_in_flight(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with ExitStack() as stack:
        broker = Mosquitto(tmp_path)
        stack.callback(broker.stop)
        broker.start()
        coap = CoapServers(tmp_path, 1)
        stack.callback(coap.stop)
        coap.start()
        # Latency keeps requests in flight at the kill.
        simulator = Simulator(tmp_path, LinkProfile(latency_ms=400), GATEWAY)
        stack.callback(simulator.stop)
        simulator.start()
        mqtt = {"host": "127.0.0.1", "port": broker.port}
        config = gateway_config(simulator.port_path, mqtt, coap.ports[0], GATEWAY, state_dir)
        config = config.replace("health_interval: 60", "health_interval: 1")
        daemon = Daemon(tmp_path, config, GATEWAY)
        stack.callback(daemon.stop)
        daemon.start()
        requester = Requester(
            f"127.0.0.1:{broker.port}", mqtt5=True, reply_filter=f"coap-bridge/{GATEWAY}/response/#"
        )
        stack.callback(requester.close)
        requester.wait_online({GATEWAY}, 60)
        target = Target(
            f"coap-bridge/{GATEWAY}/request", f"coap-bridge/{GATEWAY}/response/{requester.tag}"
        )
        journaled: set[str] = set()
        marked: set[str] = set()

        def crash_and_restart() -> None:
            daemon.kill()
            answered, in_flight = journal_at_crash(state_dir, tmp_path / "at-crash")
            journaled.update(answered)
            marked.update(in_flight)
            daemon.start()

        def post(index: int) -> tuple[dict[str, Any], Target]:
            uri = f"coap://bench/soak?id={requester.tag}-{index}"
            return {"method": "POST", "uri": uri, "payload": "x", "timeout": 20}, target

        run_open_loop(
            requester, REQUESTS, RATE, post, events=[(KILL_AT, crash_and_restart)], drain=60
        )
        sent = requester.snapshot()
        answered_before_kill = [r for r in sent if r.body["id"] in journaled]

        assert all(request.answers for request in sent), "every request is answered"
        assert 0 < len(answered_before_kill) < REQUESTS  # the kill came mid-load
        report = hits(coap.ports[0])
        repeated = set(report["repeated"])
        # Answered before the crash: answered again from the journal, never re-sent.
        assert not repeated & journaled
        assert report["ids"] == REQUESTS
        # Being served at the crash: served again after the restart, and counted.
        assert marked
        assert repeated <= marked
        health = retained_health(broker.port, len(marked))
        assert health["counters"]["replayed_after_restart"] == len(marked)
        duplicates = sum(len(request.answers) - 1 for request in sent)
        print(
            f"journaled at the kill {len(journaled)}, being served {len(marked)}, "
            f"re-sent to the server {len(repeated)}, duplicate answers {duplicates}"
        )


def retained_health(port: int, replayed: int) -> dict[str, Any]:
    """The latest retained health, once it counts `replayed` replays (or after 15 s)."""
    peer = FleetPeer(f"127.0.0.1:{port}")
    health: dict[str, Any] = {}
    try:
        peer.subscribe(f"coap-bridge/{GATEWAY}/health")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = peer.receive(timeout=2)
            if message is None:
                continue
            health = dict(json.loads(message.payload))
            if health["counters"]["replayed_after_restart"] >= replayed:
                break
        return health
    finally:
        peer.close()
