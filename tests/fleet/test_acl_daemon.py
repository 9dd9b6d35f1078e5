"""The bridge itself under config/mosquitto-fleet.acl: a daemon with its own credentials
serves its request topic and the pool on a mosquitto with password authentication,
and every topic it needs (status, health, answers, the pool's) is allowed."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.fleet import gateway_config
from bench.stack import CoapServers, Daemon, LinkProfile, Simulator
from tests.fixtures.mosquitto import MosquittoFactory
from tests.fleet.peers import FleetPeer
from tests.fleet.test_acl import ACL_FILE, USERS

pytestmark = pytest.mark.timeout(120)


def test_a_gateway_with_its_own_user_serves_its_topic_and_the_pool(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(users=USERS, acl_file=ACL_FILE)
    password_file = tmp_path / "gw-1.password"
    password_file.write_text(USERS["gw-1"] + "\n")
    password_file.chmod(0o600)
    with ExitStack() as stack:
        coap = CoapServers(tmp_path, 1)
        stack.callback(coap.stop)
        coap.start()
        simulator = Simulator(tmp_path, LinkProfile(), "gw-1")
        stack.callback(simulator.stop)
        simulator.start()
        mqtt = {
            "host": broker.host,
            "port": broker.port,
            "username": "gw-1",
            "password_file": str(password_file),
            "shared_group": "fleet",
        }
        daemon = Daemon(
            tmp_path, gateway_config(simulator.port_path, mqtt, coap.ports[0], "gw-1"), "gw-1"
        )
        stack.callback(daemon.stop)
        app = FleetPeer(f"{broker.host}:{broker.port}", username="app", password=USERS["app"])
        stack.callback(app.close)
        assert [c.value for c in app.subscribe("coap-bridge/gw-1/status")] == [1]
        daemon.start()
        status = app.receive(timeout=60)
        assert status is not None
        assert json.loads(status.payload) == {"state": "online"}
        assert [c.value for c in app.subscribe("coap-bridge/gw-1/health")] == [1]
        health = app.receive(timeout=10)
        assert health is not None
        assert json.loads(health.payload)["mqtt"]["pool"]["state"] == "member"

        assert [c.value for c in app.subscribe("coap-bridge/gw-1/response/#")] == [1]
        assert [c.value for c in app.subscribe("coap-bridge/pool/response/#")] == [1]
        get = {"method": "GET", "uri": "coap://bench/small"}
        app.publish("coap-bridge/gw-1/request", json.dumps({"id": "own", **get}).encode())
        pooled = json.dumps({"id": "pooled", **get}).encode()
        app.publish(
            "coap-bridge/pool/request",
            pooled,
            ResponseTopic="coap-bridge/pool/response/app/pooled",
            CorrelationData=b"pooled",
        )
        answers = {}
        while len(answers) < 2:
            message = app.receive(timeout=20)
            assert message is not None, f"answers so far: {answers}"
            if "/response/" in message.topic:
                answers[message.topic] = json.loads(message.payload)
        assert answers["coap-bridge/gw-1/response/own"]["code"] == "2.05"
        assert answers["coap-bridge/pool/response/app/pooled"]["gateway"] == "gw-1"
        daemon.check_alive()
    # Nothing the bridge did was refused by the ACL.
    assert "Denied" not in broker.log_path.read_text(errors="replace")
