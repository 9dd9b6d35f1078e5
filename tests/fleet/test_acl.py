"""config/mosquitto-fleet.acl on a real mosquitto with password authentication: a
gateway reads only its own requests and the pool, writes only its own topics and the
pool's answers; the application user reaches every gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import MosquittoBroker, MosquittoFactory
from tests.fleet.peers import FleetPeer

ACL_FILE = Path(__file__).resolve().parents[2] / "config" / "mosquitto-fleet.acl"
USERS = {"gw-1": "secret-1", "gw-2": "secret-2", "app": "secret-app"}
Connect = Callable[..., FleetPeer]


@pytest.fixture
def broker(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    return mosquitto_factory(users=USERS, acl_file=ACL_FILE)


@pytest.fixture
def connect(broker: MosquittoBroker) -> Iterator[Connect]:
    peers: list[FleetPeer] = []

    def make(user: str, password: str | None = None) -> FleetPeer:
        peer = FleetPeer(
            f"{broker.host}:{broker.port}",
            username=user,
            password=USERS[user] if password is None else password,
        )
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def codes(reason_codes: list[object]) -> list[int]:
    return [code.value for code in reason_codes]  # type: ignore[attr-defined]


def test_a_wrong_password_is_refused(connect: Connect) -> None:
    peer = connect("gw-1", "not-the-password")
    assert peer.refused is not None
    assert not peer.connected


@pytest.mark.parametrize(
    ("topic_filter", "topic", "allowed"),
    [
        ("coap-bridge/gw-1/request", "coap-bridge/gw-1/request", True),
        ("$share/fleet/coap-bridge/pool/request", "coap-bridge/pool/request", True),
        ("coap-bridge/gw-2/request", "coap-bridge/gw-2/request", False),
        ("coap-bridge/+/request", "coap-bridge/gw-2/request", False),
        ("coap-bridge/gw-2/response/#", "coap-bridge/gw-2/response/r1", False),
        ("coap-bridge/pool/response/#", "coap-bridge/pool/response/app/r1", False),
        ("#", "coap-bridge/gw-2/status", False),
    ],
)
def test_a_gateway_receives_only_its_requests_and_the_pool(
    connect: Connect, topic_filter: str, topic: str, allowed: bool
) -> None:
    gateway, app = connect("gw-1"), connect("app")
    # mosquitto may grant a subscription and then withhold each message it may not read:
    # what counts is what is delivered.
    granted = codes(gateway.subscribe(topic_filter))
    if allowed:
        assert granted == [1]
    publisher = app if topic.endswith("/request") else connect("gw-2")
    assert publisher.publish(topic, b"{}").value < 0x80
    if allowed:
        delivered = gateway.receive()
        assert delivered is not None
        assert delivered.topic == topic
    else:
        # A message published after it and readable shows the denied one was withheld,
        # not merely late.
        assert codes(gateway.subscribe("coap-bridge/gw-1/request")) == [1]
        assert app.publish("coap-bridge/gw-1/request", b"marker").value < 0x80
        delivered = gateway.receive()
        assert delivered is not None
        assert delivered.payload == b"marker"


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("coap-bridge/gw-1/response/r1", True),
        ("coap-bridge/gw-1/status", True),
        ("coap-bridge/gw-1/health", True),
        ("coap-bridge/gw-1/info", True),
        ("coap-bridge/pool/response/app/r2", True),
        ("coap-bridge/gw-1/request", False),
        ("coap-bridge/pool/request", False),
        ("coap-bridge/gw-2/status", False),
        ("coap-bridge/gw-2/response/r1", False),
        ("elsewhere", False),
    ],
)
def test_a_gateway_writes_only_its_own_topics_and_pool_answers(
    connect: Connect, topic: str, allowed: bool
) -> None:
    gateway = connect("gw-1")
    code = gateway.publish(topic, b"{}")
    # Success codes are below 0x80 (mosquitto says 0x10 when nobody subscribed).
    assert (code.value < 0x80) is allowed, f"{topic}: {code}"


def test_requests_and_answers_flow_between_the_application_and_its_gateway(
    connect: Connect,
) -> None:
    gw1, gw2, app = connect("gw-1"), connect("gw-2"), connect("app")
    assert codes(gw1.subscribe("coap-bridge/gw-1/request")) == [1]
    assert codes(gw2.subscribe("coap-bridge/gw-2/request")) == [1]
    assert codes(app.subscribe("coap-bridge/+/response/#")) == [1]
    assert codes(app.subscribe("coap-bridge/pool/response/#")) == [1]

    assert app.publish("coap-bridge/gw-1/request", b'{"id": "r1"}').value < 0x80
    request = gw1.receive()
    assert request is not None
    assert request.payload == b'{"id": "r1"}'
    assert gw2.receive(timeout=0.5) is None  # the other gateway sees none of it

    assert gw1.publish("coap-bridge/gw-1/response/r1", b'{"id": "r1"}').value < 0x80
    answer = app.receive()
    assert answer is not None
    assert answer.topic == "coap-bridge/gw-1/response/r1"

    assert codes(gw2.subscribe("$share/fleet/coap-bridge/pool/request")) == [1]
    assert app.publish("coap-bridge/pool/request", b'{"id": "p1"}').value < 0x80
    pooled = gw2.receive()
    assert pooled is not None
    assert pooled.topic == "coap-bridge/pool/request"
    assert gw2.publish("coap-bridge/pool/response/app/p1", b'{"id": "p1"}').value < 0x80
    pooled_answer = app.receive()
    assert pooled_answer is not None
    assert pooled_answer.topic == "coap-bridge/pool/response/app/p1"
