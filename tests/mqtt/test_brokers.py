"""`mqtt.hosts` addresses and the order the nodes are tried in (sans-IO)."""

from __future__ import annotations

import pytest

from bridge.backoff import Backoff
from bridge.mqtt.brokers import BrokerAddress, BrokerRotation, parse_broker_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node1:1884", BrokerAddress("node1", 1884)),
        ("node1", BrokerAddress("node1", 1883)),
        (" 10.0.0.5:8883 ", BrokerAddress("10.0.0.5", 8883)),
        ("[2001:db8::1]:1883", BrokerAddress("2001:db8::1", 1883)),
        ("[::1]", BrokerAddress("::1", 1883)),
    ],
)
def test_addresses_parse(text: str, expected: BrokerAddress) -> None:
    assert parse_broker_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "node1:", "[::1]:", "node1:0", "node1:70000", "node1:x", "2001:db8::1", "[::1", "a b:1"],
)
def test_bad_addresses_say_why(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_broker_address(text)


def test_an_ipv6_address_prints_with_brackets() -> None:
    assert str(BrokerAddress("::1", 1883)) == "[::1]:1883"
    assert str(BrokerAddress("node1", 1883)) == "node1:1883"


def rotation(count: int) -> BrokerRotation:
    addresses = tuple(BrokerAddress(f"node{index + 1}", 1883) for index in range(count))
    return BrokerRotation(addresses, Backoff(1.0, 8.0, jitter=0))


def test_every_node_is_tried_at_once_before_the_backoff_starts() -> None:
    nodes = rotation(3)
    assert nodes.current.host == "node1"
    assert nodes.failed() == 0.0
    assert nodes.current.host == "node2"
    assert nodes.failed() == 0.0
    assert nodes.current.host == "node3"
    # The whole round failed: wait, growing, while going round again.
    assert nodes.failed() == 1.0
    assert nodes.current.host == "node1"
    assert nodes.failed() == 2.0
    assert nodes.failed() == 4.0
    assert nodes.current.host == "node3"


def test_a_link_that_held_ends_the_round_and_the_backoff() -> None:
    nodes = rotation(3)
    nodes.failed()
    nodes.failed()
    nodes.failed()
    nodes.failed()  # on node2 now, after waits
    nodes.link_held()
    # The link on node2 is lost: node3 and node1 are tried at once.
    assert nodes.failed() == 0.0
    assert nodes.current.host == "node3"
    assert nodes.failed() == 0.0
    assert nodes.failed() == 1.0  # the backoff starts from its initial step again


def test_one_address_is_the_plain_reconnect_backoff() -> None:
    nodes = rotation(1)
    assert [nodes.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert nodes.current.host == "node1"


def test_links_dropped_right_after_connecting_still_back_off() -> None:
    nodes = rotation(2)
    # Each node accepts and drops at once (a takeover): no link_held(), so the
    # rotation keeps counting failures and the backoff grows.
    assert [nodes.failed() for _ in range(5)] == [0.0, 1.0, 2.0, 4.0, 8.0]
