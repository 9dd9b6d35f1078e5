"""What each layer gets from `Settings`, and which config changes need a restart of the layers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import Settings, load_password
from bridge.mqtt import FrontSettings, MqttClientSettings
from bridge.mqtt.brokers import parse_broker_address
from bridge.ops.logs import MIN_MASKED_LENGTH, register_secret

log = logging.getLogger(__name__)

# Settings that a reload applies without restarting any layer.
_LIVE_COAP_KEYS = frozenset(
    {"servers", "allow_hosts", "default_timeout", "max_timeout", "max_request_payload"}
)


@dataclass
class ReloadState:
    loaded_at: float = field(default_factory=time.time)
    reloads: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"loaded_at": round(self.loaded_at), "reloads": self.reloads, "error": self.error}


def client_settings(settings: Settings) -> MqttClientSettings:
    """The MQTT client's settings, with the password read (and registered as a secret)."""
    mqtt = settings.mqtt
    password = load_password(settings) or ""
    if password and not register_secret(password):
        log.warning(
            "the MQTT password is shorter than %d characters: log lines cannot mask it "
            "without giving it away, so only fields named as passwords are masked; "
            "use a longer one",
            MIN_MASKED_LENGTH,
        )
    return MqttClientSettings(
        client_id=mqtt.client_id,
        base_topic=mqtt.base_topic,
        host=mqtt.host,
        port=mqtt.port,
        brokers=tuple(parse_broker_address(text) for text in mqtt.hosts),
        protocol=mqtt.protocol,
        username=mqtt.username,
        password=password,
        tls=mqtt.tls if mqtt.tls.enabled else None,
        keepalive=mqtt.keepalive,
        session_expiry=mqtt.session_expiry,
        max_queued=mqtt.max_queued,
        receive_maximum=min(65535, max(settings.coap.max_in_flight * 2, 20)),
    )


def front_settings(settings: Settings) -> FrontSettings:
    """The request front's settings."""
    return FrontSettings(
        base_topic=settings.mqtt.base_topic,
        gateway_id=settings.gateway_id,
        shared_group=settings.mqtt.shared_group,
        pool_topic=settings.mqtt.pool_topic,
        pool_keepalive=settings.mqtt.pool_keepalive,
        pool_receive_maximum=settings.mqtt.pool_receive_maximum,
        state_dir=Path(settings.state_dir) if settings.state_dir else None,
        max_in_flight=settings.coap.max_in_flight,
        dedupe_window=settings.dedupe_window,
        health_interval=settings.health_interval,
        shutdown_grace=settings.shutdown_grace,
    )


def needs_restart(old: Settings, new: Settings) -> bool:
    """True when `new` differs from `old` in anything a running stack cannot take live."""
    old_data, new_data = old.model_dump(), new.model_dump()
    for key in ("logging", "coap"):
        old_data.pop(key)
        new_data.pop(key)
    if old_data != new_data:
        return True
    # Security contexts are loaded (and locked) once per incarnation of the layers.
    if old.coap.oscore_context_dirs() != new.coap.oscore_context_dirs():
        return True
    old_coap, new_coap = old.coap.model_dump(), new.coap.model_dump()
    return any(old_coap[key] != new_coap[key] for key in old_coap.keys() - _LIVE_COAP_KEYS)
