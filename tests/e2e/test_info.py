"""`<base>/info`: retained at start, published again after a reload."""

from __future__ import annotations

import pytest

from bridge import __version__
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.daemon_config import GATEWAY_ID

pytestmark = pytest.mark.timeout(60)


def retained_info(stack: BridgeStack) -> dict[str, object]:
    """The retained info, read by a fresh subscription (it validates it, too)."""
    reader = stack.client()
    [message] = reader.collect(f"{stack.base}/info", 1, timeout=5)
    assert message.retain
    body: dict[str, object] = message.body
    return body


def test_info_is_retained_at_start(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()
    info = retained_info(stack)

    assert info["version"] == __version__
    assert info["gateway_id"] == GATEWAY_ID
    assert info["contract_version"] == 2
    assert info["modems"] == [{"name": "modem", "model": "L610", "port": stack.pty_path}]
    assert info["servers"] == {
        alias: {"host": server["host"], "port": server["port"], "oscore": False}
        for alias, server in stack.config["coap"]["servers"].items()
    }
    assert info["capabilities"] == ["observe", "blockwise"]
    schema = info["request_schema"]
    assert isinstance(schema, dict)
    assert f"^{stack.base}/response/" in schema["properties"]["response_topic"]["pattern"]


def test_info_follows_a_reload(bridge_stack: BridgeStackFactory) -> None:
    stack = bridge_stack()
    watcher = stack.client()
    watcher.collect(f"{stack.base}/info", 1, timeout=5)  # the retained one

    stack.reload({"coap.servers.newlab": {"host": "127.0.0.1", "port": stack.coap.port}})
    [live] = watcher.collect(f"{stack.base}/info", 1, timeout=10)
    assert "newlab" in live["servers"]
    assert "newlab" in retained_info(stack)["servers"]
