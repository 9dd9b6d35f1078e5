from __future__ import annotations

from typing import Any

import pytest

from bridge.config import Settings

BASE = "coap-bridge/g1"


def make_settings(**coap: Any) -> Settings:
    """The settings these tests share; keywords replace keys of the coap section."""
    return Settings.model_validate(
        {
            "gateway_id": "g1",
            "modem": {"port": "/dev/null"},
            "coap": {
                "servers": {
                    "meters": {"host": "127.0.0.1", "port": 5683},
                    "Named": {"host": "Meters.Example", "port": 5699},
                },
                "allow_hosts": ["10.0.0.5", "[::1]"],
                "default_timeout": 30,
                "max_timeout": 60,
                "max_request_payload": 1024,
                **coap,
            },
        }
    )


@pytest.fixture
def settings() -> Settings:
    return make_settings()
