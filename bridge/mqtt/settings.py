"""Typed settings of the MQTT package, built by the service from `bridge.config`.

The MQTT package does not read the YAML config itself: the service maps
`settings.mqtt.*` onto `MqttClientSettings` (with the password already read from
`password_file`) and the request-front knobs onto `FrontSettings`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class MqttProtocol(enum.Enum):
    """`mqtt.protocol` of the config: `MqttProtocol(str(value))` accepts 5 and "3.1.1"."""

    V5 = "5"
    V311 = "3.1.1"


@dataclass(frozen=True)
class TlsSettings:
    """TLS towards the broker. Empty `ca_file` means the system's trusted CAs."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class MqttClientSettings:
    client_id: str
    base_topic: str
    host: str = "localhost"
    port: int = 1883
    protocol: MqttProtocol = MqttProtocol.V5
    username: str = ""
    password: str = field(default="", repr=False)
    tls: TlsSettings | None = None
    keepalive: int = 30
    session_expiry: int = 86400
    # Answers waiting while the broker is unreachable; beyond this the oldest is dropped.
    max_queued: int = 1000
    # MQTT 5 Receive Maximum: how many unacknowledged requests the broker may hand us at
    # once. With manual ack this is the broker-side bound on requests waiting for a
    # slot. 0 = not sent (the broker then assumes 65535).
    receive_maximum: int = 0
    connect_timeout: float = 5.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    # Time allowed on shutdown to publish the retained offline status and DISCONNECT.
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not self.client_id:
            # A persistent session is found again by its client id only.
            raise ValueError("client_id must not be empty (the persistent session needs it)")
        if self.max_queued < 1:
            raise ValueError("max_queued must be at least 1")


@dataclass(frozen=True)
class FrontSettings:
    base_topic: str
    shared_group: str = ""
    pool_topic: str = "coap-bridge/pool"
    max_in_flight: int = 64
    dedupe_window: float = 600.0
    dedupe_max_entries: int = 10000
    health_interval: float = 60.0
    # Shortest gap between two health publishes asked for by `health_changed()`.
    health_min_gap: float = 1.0
    # On shutdown, requests being served get this long to finish before they are
    # answered with a `cancelled` error.
    shutdown_grace: float = 2.0
    # ...and then this long for those `cancelled` answers to be acknowledged.
    shutdown_flush: float = 2.0
