"""The info object: what it lists, that it keeps to the contract, and no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from bridge import __version__
from bridge.config import Settings
from bridge.mapping.schema import request_schema
from bridge.ops.info import info_object
from tests.fixtures.contract import CONTRACT
from tests.fixtures.oscore_server import MASTER_SECRET_HEX, write_context


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
        "servers": {"meters": {"host": "meters.example", "port": 5684, "oscore": False}},
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


def test_an_oscore_alias_is_listed_as_protected(tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "meters", sender_id_hex="", recipient_id_hex="01", secret_hex=MASTER_SECRET_HEX
    )
    config = Settings.model_validate(
        {
            "modem": {"port": "/dev/ttyUSB2"},
            "coap": {
                "servers": {
                    "meters": {"host": "meters.example", "oscore": {"context_dir": str(context)}},
                    "plain": {"host": "10.0.0.5"},
                }
            },
        }
    )
    info = info_object(config, [MODEM])
    assert info["capabilities"] == ["observe", "blockwise", "oscore"]
    assert info["servers"]["meters"]["oscore"] is True
    assert info["servers"]["plain"]["oscore"] is False
    payload = json.dumps(info)
    assert MASTER_SECRET_HEX not in payload
    assert CONTRACT.check(
        "coap-bridge/gw/info", payload.encode(), base="coap-bridge/gw", retain=True
    )
