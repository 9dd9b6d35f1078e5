"""Typed settings of the MQTT package, built by the service from `bridge.config`.

The MQTT package does not read the YAML config: the service hands it
`MqttClientSettings` (password already read) and `FrontSettings`. `MqttProtocol` and
`TlsSettings` are defined here once; the config's `mqtt` section uses them (adding its
checks of the TLS files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bridge.mqtt.brokers import BrokerAddress


class MqttProtocol(StrEnum):
    """`mqtt.protocol` of the config: MQTT 5 or 3.1.1."""

    V5 = "5"
    V311 = "3.1.1"


class TlsSettings(BaseModel):
    """TLS towards the broker (`mqtt.tls`). Empty `ca_file` means the system's trusted CAs.

    The client takes it only when `enabled`; `tls=None` in `MqttClientSettings` is
    plain TCP. File paths are used as given (the config stores them absolute).
    """

    # strict: YAML already types scalars, as in every config section.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class MqttClientSettings:
    client_id: str
    base_topic: str
    host: str = "localhost"
    port: int = 1883
    # `mqtt.hosts`: the nodes of a broker cluster, tried in turn; empty = host/port.
    brokers: tuple[BrokerAddress, ...] = ()
    protocol: MqttProtocol = MqttProtocol.V5
    username: str = ""
    password: str = field(default="", repr=False)
    tls: TlsSettings | None = None
    keepalive: int = 30
    session_expiry: int = 86400
    # True for the pool connection: its session (and the broker's assignments to it)
    # ends with the connection.
    clean_start: bool = False
    # The retained `<base>/status` online/offline and its Last Will: only one connection
    # of a gateway announces it.
    announce_status: bool = True
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
        if self.tls is not None and not self.tls.enabled:
            raise ValueError("tls is given but not enabled; pass tls=None for plain TCP")

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """The broker nodes to try, in order."""
        return self.brokers or (BrokerAddress(self.host, self.port),)


@dataclass(frozen=True)
class FrontSettings:
    base_topic: str
    # Named in every answer (`"gateway"`), so a client sees who served it.
    gateway_id: str = ""
    shared_group: str = ""
    pool_topic: str = "coap-bridge/pool"
    # The pool connection: dropped by the broker after 1.5 x this silence, and at most
    # this many pooled requests in flight on it.
    pool_keepalive: int = 10
    pool_receive_maximum: int = 8
    # Where the crash-safe dedupe journal lives; None = the in-memory cache only.
    state_dir: Path | None = None
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
