"""A broker that refuses the request subscription (dynamic-security ACL): the client is
not ready, says why, keeps retrying with backoff and is ready once the ACL grants it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.modem import eventually
from tests.fixtures.mosquitto import MosquittoBroker, MosquittoFactory
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front

ADMIN = ("admin", "admin-secret")


def _ctrl(broker: MosquittoBroker, *args: str) -> None:
    subprocess.run(
        [
            *("mosquitto_ctrl", "-h", broker.host, "-p", str(broker.port)),
            *("-u", ADMIN[0], "-P", ADMIN[1], "dynsec", *args),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )


@pytest.fixture
def dynsec_broker(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> MosquittoBroker:
    config = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), *ADMIN],
        check=True,
        capture_output=True,
        timeout=10,
    )
    broker = mosquitto_factory(dynsec=config)
    # The bridge may publish anywhere but subscribe to nothing; the test peer may do all.
    _ctrl(broker, "createRole", "bridge")
    _ctrl(broker, "addRoleACL", "bridge", "publishClientSend", "#", "allow")
    _ctrl(broker, "createClient", "bridge", "-p", "bridge-secret")
    _ctrl(broker, "addClientRole", "bridge", "bridge")
    _ctrl(broker, "createRole", "peer")
    for acl in ("publishClientSend", "subscribePattern"):
        _ctrl(broker, "addRoleACL", "peer", acl, "#", "allow")
    _ctrl(broker, "createClient", "peer", "-p", "peer-secret")
    _ctrl(broker, "addClientRole", "peer", "peer")
    return broker


async def test_refused_request_subscription_is_not_ready_and_retried(
    dynsec_broker: MosquittoBroker, peer_factory: PeerFactory
) -> None:
    peer = peer_factory(dynsec_broker, username="peer", password="peer-secret")
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(
        dynsec_broker, username="bridge", password="bridge-secret", reconnect_max=1.0
    )
    seen: list[str | None] = []
    async with running_front(settings, EchoHandler(), connect=False) as (client, _front):
        client.add_subscription_listener(seen.append)
        await eventually(lambda: client.subscription_error is not None)
        assert f"{BASE}/request" in str(client.subscription_error)
        assert "Not authorized" in str(client.subscription_error)
        with pytest.raises(TimeoutError):  # not ready while refused
            async with asyncio.timeout(0.5):
                await client.wait_connected()

        _ctrl(dynsec_broker, "addRoleACL", "bridge", "subscribePattern", f"{BASE}/#", "allow")
        async with asyncio.timeout(10):
            await client.wait_connected()
        assert client.subscription_error is None
        assert seen[0] is not None
        assert seen[-1] is None
        peer.request({"id": "after-grant"})
        _, answer = await peer.receive_json()
        assert answer["id"] == "after-grant"
