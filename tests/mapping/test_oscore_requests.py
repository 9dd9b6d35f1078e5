"""Which requests are protected with OSCORE, and plaintext refused where it is required."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.mapping import ParsedRequest, PlaintextRefused, error_to_json, parse_request
from tests.fixtures.oscore_server import (
    CLIENT_ID_HEX,
    MASTER_SECRET_HEX,
    SERVER_ID_HEX,
    write_context,
)
from tests.mapping.conftest import make_settings


def settings_with(tmp_path: Path, **secure: Any) -> Settings:
    directory = write_context(
        tmp_path / "secure",
        sender_id_hex=CLIENT_ID_HEX,
        recipient_id_hex=SERVER_ID_HEX,
        secret_hex=MASTER_SECRET_HEX,
    )
    return make_settings(
        servers={
            "meters": {"host": "127.0.0.1", "port": 5683},
            "secure": {
                "host": "127.0.0.1",
                "port": 5684,
                "oscore": {"context_dir": str(directory)},
                **secure,
            },
        }
    )


def parse(settings: Settings, uri: str) -> ParsedRequest | PlaintextRefused:
    payload = json.dumps({"id": "r1", "uri": uri}).encode()
    try:
        request = parse_request(payload, settings)
    except PlaintextRefused as exc:
        return exc
    assert isinstance(request, ParsedRequest)
    return request


def test_requests_to_the_alias_are_protected_by_its_context(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    secure = parse(settings, "coap://secure/v1/temp")
    plain = parse(settings, "coap://meters/v1/temp")

    assert isinstance(secure, ParsedRequest)
    assert (secure.host, secure.port, secure.oscore) == ("127.0.0.1", 5684, "secure")
    assert isinstance(plain, ParsedRequest)
    assert plain.oscore is None


def test_plaintext_to_a_host_port_that_requires_oscore_is_a_security_error(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path)
    refused = parse(settings, "coap://127.0.0.1:5684/v1/temp")

    assert isinstance(refused, PlaintextRefused)
    answer = error_to_json("r1", refused)
    assert answer["error"] == {
        "kind": "security",
        "message": "plaintext request to 127.0.0.1:5684 refused: server secure requires "
        "OSCORE there (coap.servers.secure.require_oscore); address it as coap://secure/...",
    }


def test_require_oscore_false_sends_plaintext_to_the_same_host_port(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, require_oscore=False)
    plain = parse(settings, "coap://127.0.0.1:5684/v1/temp")
    secure = parse(settings, "coap://secure/v1/temp")

    assert isinstance(plain, ParsedRequest)
    assert plain.oscore is None
    assert isinstance(secure, ParsedRequest)
    assert secure.oscore == "secure"
