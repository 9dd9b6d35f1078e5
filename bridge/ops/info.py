"""The `<base>/info` object (mqtt-api.md): what this bridge is and what it takes. Pure.

Published retained at start and after a reload: the release, the gateway, the modems
(name, model, port), the server aliases (host and port only: nothing else of the
config), the capabilities, the contract version and the request JSON Schema narrowed
to this configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bridge import __version__
from bridge.config import Settings
from bridge.mapping.schema import request_schema

CONTRACT_VERSION: Final = 2


def capabilities(settings: Settings) -> list[str]:
    """What a client may rely on: observe and block-wise always; OSCORE and the pool when set."""
    found = ["observe", "blockwise"]
    if any(server.oscore is not None for server in settings.coap.servers.values()):
        found.append("oscore")
    if settings.mqtt.shared_group:
        found.append("pool")
    return found


def info_object(settings: Settings, modems: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The info object; `modems` are health records (name, model and port are taken)."""
    return {
        "version": __version__,
        "gateway_id": settings.gateway_id,
        "contract_version": CONTRACT_VERSION,
        "modems": [
            {
                "name": str(modem.get("name", index)),
                "model": str(modem.get("model", "")),
                "port": str(modem.get("port", "")),
            }
            for index, modem in enumerate(modems)
        ],
        "servers": {
            alias: {"host": server.host, "port": server.port, "oscore": server.oscore is not None}
            for alias, server in settings.coap.servers.items()
        },
        "capabilities": capabilities(settings),
        "request_schema": request_schema(settings),
    }
