"""Readable payloads as a new user sees them: mosquitto_rr against libcoap's server."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.fixtures.coap_servers import LibcoapServer
from tests.fixtures.contract import CONTRACT
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stack(bridge_stack: BridgeStackFactory, libcoap_server: LibcoapServer) -> BridgeStack:
    server = {"host": libcoap_server.host, "port": libcoap_server.port}
    return bridge_stack(overrides={"coap.servers.libcoap": server})


def mosquitto_rr(stack: BridgeStack, request: dict[str, Any]) -> dict[str, Any]:
    """One request with mosquitto_rr (MQTT 5 Response Topic), as the README shows it."""
    response_topic = f"{stack.base}/response/rr-{request['id']}"
    result = subprocess.run(
        [
            "mosquitto_rr",
            "-h", stack.broker.host,
            "-p", str(stack.broker.port),
            "-V", "5",
            "-t", f"{stack.base}/request",
            "-e", response_topic,
            "-m", json.dumps(request),
            "-W", "10",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )  # fmt: skip
    CONTRACT.check(response_topic, result.stdout.encode(), base=stack.base)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_libcoap_root_without_content_format_reads_as_text(stack: BridgeStack) -> None:
    answer = mosquitto_rr(stack, {"id": "root", "uri": "coap://libcoap/"})

    assert (answer["code"], answer["content_format"]) == ("2.05", None)
    assert answer["payload_encoding"] == "text"
    assert answer["payload"].startswith("This is a test server made with libcoap")


def test_not_found_diagnostic_payload_reads_as_text(stack: BridgeStack) -> None:
    answer = mosquitto_rr(stack, {"id": "nope", "uri": "coap://libcoap/no-such-resource"})

    assert (answer["ok"], answer["code"], answer["code_name"]) == (False, "4.04", "Not Found")
    assert (answer["payload"], answer["payload_encoding"]) == ("Not Found", "text")
