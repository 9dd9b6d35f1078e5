"""The clustered broker the failover tests rely on: three aedes nodes over Redis share
sessions, so a persistent client that moves to another node finds what was queued."""

from __future__ import annotations

from bench.cluster import AedesCluster
from tests.fleet.peers import FleetPeer


def test_a_session_moves_to_another_node_with_its_queued_messages(
    aedes_cluster: AedesCluster,
) -> None:
    first, second, third = aedes_cluster.hosts
    subscriber = FleetPeer(first, mqtt5=False, client_id="mover", persistent=True)
    assert [code.value for code in subscriber.subscribe("fleet/queued")] == [1]
    publisher = FleetPeer(third, mqtt5=False)
    publisher.publish("fleet/queued", b"while connected")
    received = subscriber.receive()
    assert received is not None
    assert received.payload == b"while connected"

    aedes_cluster.nodes[0].kill()
    subscriber.client.loop_stop()
    publisher.publish("fleet/queued", b"while away")

    moved = FleetPeer(second, mqtt5=False, client_id="mover", persistent=True)
    try:
        # At least once: the first message may come again if node 1 died before it
        # recorded the acknowledgement.
        payloads = []
        while (received := moved.receive(timeout=10)) is not None:
            payloads.append(received.payload)
            if received.payload == b"while away":
                break
        assert payloads[-1:] == [b"while away"]
        assert set(payloads) <= {b"while connected", b"while away"}
    finally:
        moved.close()
        publisher.close()
