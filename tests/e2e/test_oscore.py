"""OSCORE end to end: MQTT requests through the daemon and the simulated L610 to an
aiocoap OSCORE server process keyed with the RFC 8613 Appendix C.1 vectors."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.coap_servers import ROOT_TEXT
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.oscore_server import (
    CLIENT_DERIVED_HEX,
    HOST,
    MASTER_SALT_HEX,
    MASTER_SECRET_HEX,
    WRONG_SECRET_HEX,
    OscoreServer,
)

pytestmark = pytest.mark.timeout(90)

BODY_4K = bytes((i * 13 + 5) % 251 for i in range(4096))


def secure_server(server: OscoreServer, context_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "coap.servers.secure": {
            "host": HOST,
            "port": server.port,
            "oscore": {"context_dir": str(context_dir)},
            **extra,
        }
    }


def protected_stack(
    bridge_stack: BridgeStackFactory, server: OscoreServer, **overrides: Any
) -> BridgeStack:
    return bridge_stack(overrides={**secure_server(server, server.client_context()), **overrides})


def get_root(stack: BridgeStack, request_id: str) -> dict[str, Any]:
    answer = stack.mqtt.request({"id": request_id, "uri": "coap://secure/"})
    body: dict[str, Any] = answer.body
    return body


def test_get_4k_put_get_and_observe_are_protected_and_no_key_is_logged(
    bridge_stack: BridgeStackFactory, oscore_server: OscoreServer
) -> None:
    stack = protected_stack(bridge_stack, oscore_server, **{"logging.level": "debug"})

    got = get_root(stack, "os-get")
    put = stack.mqtt.request(
        {
            "id": "os-put",
            "method": "PUT",
            "uri": "coap://secure/store",
            "payload": base64.b64encode(BODY_4K).decode(),
            "payload_encoding": "base64",
            "timeout": 30,
        },
        timeout=35,
    )
    back = stack.mqtt.request(
        {"id": "os-back", "uri": "coap://secure/store", "timeout": 30}, timeout=35
    )
    topic = f"{stack.base}/response/os-obs"
    stack.mqtt.subscribe(topic)
    stack.mqtt.publish_raw(
        json.dumps({"id": "os-obs", "uri": "coap://secure/time", "observe": True, "timeout": 20})
    )
    notifications = stack.mqtt.collect(topic, 3, timeout=10)
    stack.mqtt.publish_raw(json.dumps({"id": "os-obs", "cancel": True}))

    assert got["ok"] is True
    assert got["payload"] == ROOT_TEXT.decode()
    assert put["ok"] is True
    assert put["code"] == "2.04"
    assert base64.b64decode(back["payload"]) == BODY_4K
    assert [n.body["ok"] for n in notifications] == [True, True, True]
    assert all(n.body["payload"].startswith("tick ") for n in notifications)
    sequences = [n.body["observe"] for n in notifications]
    assert sequences == sorted(set(sequences))
    counts = oscore_server.counts()
    # 1 GET, 16 + 16 blocks of 256 bytes, the registration; never an outer Block option.
    assert counts["protected"] >= 34
    assert counts["outer_block"] == 0
    assert counts["plaintext"] == 0
    log = stack.daemon_log()
    assert " DEBUG " in log
    assert "OSCORE context for secure loaded" in log
    for secret in (MASTER_SECRET_HEX, MASTER_SALT_HEX, *CLIENT_DERIVED_HEX):
        assert secret not in log.lower()


def test_wrong_key_is_a_security_error(
    bridge_stack: BridgeStackFactory, oscore_server: OscoreServer
) -> None:
    wrong = oscore_server.client_context(secret_hex=WRONG_SECRET_HEX)
    stack = bridge_stack(overrides=secure_server(oscore_server, wrong))

    answer = get_root(stack, "os-wrong")

    assert answer["ok"] is False
    assert answer["error"]["kind"] == "security"
    assert (
        "(secure) answered the protected request with 4.00 Bad Request"
        in (answer["error"]["message"])
    )


def test_plaintext_to_the_same_host_port_is_refused_unless_not_required(
    bridge_stack: BridgeStackFactory, oscore_server: OscoreServer
) -> None:
    directory = oscore_server.client_context()
    stack = bridge_stack(overrides=secure_server(oscore_server, directory))
    plain_uri = f"coap://{HOST}:{oscore_server.port}/"

    refused = stack.mqtt.request({"id": "os-plain-1", "uri": plain_uri}).body
    stack.reload(secure_server(oscore_server, directory, require_oscore=False))
    stack.wait_log("applied live")
    answered = stack.mqtt.request({"id": "os-plain-2", "uri": plain_uri}).body

    assert refused["error"]["kind"] == "security"
    assert "requires OSCORE" in refused["error"]["message"]
    assert answered["ok"] is False
    assert answered["code"] == "4.01"
    assert oscore_server.counts()["plaintext"] == 1
    assert get_root(stack, "os-still")["ok"] is True


def test_sequence_numbers_survive_a_restart_and_a_sigkill(
    bridge_stack: BridgeStackFactory, oscore_server: OscoreServer
) -> None:
    stack = protected_stack(bridge_stack, oscore_server)
    answers = [get_root(stack, f"os-a{n}") for n in range(3)]

    assert stack.stop_daemon(signal.SIGTERM) == 0
    stack.start_daemon()
    answers += [get_root(stack, f"os-b{n}") for n in range(3)]

    stack.kill_daemon()
    stack.start_daemon()
    answers += [get_root(stack, f"os-c{n}") for n in range(3)]

    # A restarted context that reused a sequence number would get "Replay detected".
    assert [answer["ok"] for answer in answers] == [True] * 9, answers
