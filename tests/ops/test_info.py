"""The info object: what it lists, that it keeps to the contract, and no secrets."""

from __future__ import annotations

import json

from bridge import __version__
from bridge.config import Settings
from bridge.mapping.schema import request_schema
from bridge.ops.info import info_object
from tests.fixtures.contract import CONTRACT


def settings(**mqtt: object) -> Settings:
    return Settings.model_validate(
        {
            "gateway_id": "gw-7",
            "modem": {"port": "/dev/ttyUSB2"},
            "mqtt": {"username": "bridge-user", **mqtt},
            "coap": {
                "servers": {"meters": {"host": "meters.example", "port": 5684}},
                "allow_hosts": ["10.0.0.5"],
            },
        }
    )


MODEM = {"name": "a", "model": "L610", "port": "/dev/ttyUSB2", "imei": "86", "ready": True}


def test_info_lists_the_bridge_and_keeps_to_the_contract() -> None:
    config = settings()
    info = info_object(config, [MODEM])

    assert info == {
        "version": __version__,
        "gateway_id": "gw-7",
        "contract_version": 2,
        "modems": [{"name": "a", "model": "L610", "port": "/dev/ttyUSB2"}],
        "servers": {"meters": {"host": "meters.example", "port": 5684}},
        "capabilities": ["observe", "blockwise"],
        "request_schema": request_schema(config),
    }
    payload = json.dumps(info).encode()
    assert CONTRACT.check("coap-bridge/gw-7/info", payload, base="coap-bridge/gw-7", retain=True)
    assert "bridge-user" not in payload.decode()  # nothing of the MQTT credentials


def test_a_pool_member_says_so() -> None:
    info = info_object(settings(shared_group="fleet"), [{"port": "/dev/ttyUSB2"}])
    assert info["capabilities"] == ["observe", "blockwise", "pool"]
    assert info["modems"] == [{"name": "0", "model": "", "port": "/dev/ttyUSB2"}]
