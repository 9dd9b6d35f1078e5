"""The config's typed, validated, frozen settings: one pydantic model per section.

The accepted shape is the contract's example (kept verbatim as
`tests/config/contract-example.yaml`, documented key by key in
`config/config.example.yaml`); keys may be added, never removed. Relative file paths
(`mqtt.password_file`, `mqtt.tls.*_file`, `coap.servers.*.oscore.context_dir`,
`state_dir`) are resolved against the config file's directory (`base_dir` in the
validation context) and stored absolute. `mqtt.protocol` and `mqtt.tls` use the MQTT
package's own types.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.config.hosts import listen_address, normalize_host
from bridge.config.modems import ModemSettings, modems_from_sections, unknown_modem_problem
from bridge.config.oscore import oscore_context_problem
from bridge.config.password import password_file_problem
from bridge.config.sections import Seconds, Section, resolve_path
from bridge.mqtt.brokers import parse_broker_address
from bridge.mqtt.settings import MqttProtocol, TlsSettings
from bridge.mqtt.tls import ca_problem, cert_problem, key_problem
from bridge.mqtt.topics import topic_problem

_ALIAS = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,61}[a-z0-9_])?$")


def _host(value: str) -> str:
    return normalize_host(value)


def _alias(value: str) -> str:
    alias = value.lower()
    if not _ALIAS.match(alias):
        raise ValueError(
            f"server alias {value!r} must be usable as a URI host "
            "(letters, digits, '-', '_', '.'; used as coap://<alias>/path)"
        )
    return alias


HostName = Annotated[str, AfterValidator(_host)]
AliasName = Annotated[str, AfterValidator(_alias)]
Port = Annotated[int, Field(ge=1, le=65535)]


class TlsSection(TlsSettings):
    """`mqtt.tls` as the config checks it: the MQTT package's TlsSettings, validated.

    When enabled, the files are loaded as the client will load them (`bridge.mqtt.tls`).
    """

    # Validated when absent too: a cert_file without key_file must hold the key.
    key_file: str = Field(default="", validate_default=True)

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _existing_file(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        path = resolve_path(value, info)
        if info.data.get("enabled") and not os.path.isfile(path):
            raise ValueError(f"file {path} does not exist (mqtt.tls.enabled is true)")
        return path

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _usable_material(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("enabled"):
            return value
        problem = None
        if info.field_name == "ca_file" and value:
            problem = ca_problem(value)
        elif info.field_name == "cert_file" and value:
            problem = cert_problem(value)
        elif info.field_name == "key_file" and info.data.get("cert_file"):
            problem = key_problem(info.data["cert_file"], value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("key_file")
    @classmethod
    def _key_needs_cert(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("cert_file"):
            raise ValueError("key_file is set but cert_file is not; set both for a client cert")
        return value


def _topic_name(value: str) -> str:
    problem = topic_problem(value)
    if problem is None and value.startswith("$"):
        problem = "must not start with '$' (reserved for the broker, e.g. $SYS)"
    if problem is None and (value.startswith("/") or value.endswith("/")):
        problem = "must not start or end with '/'"
    if problem is not None:
        raise ValueError(f"topic {value!r} {problem}")
    return value


class MqttSettings(Section):
    host: str = Field(default="localhost", min_length=1)
    port: Port = 1883
    # A broker cluster: ["node1:1883", "node2:1883", ...], instead of host/port.
    hosts: tuple[str, ...] = Field(default=(), strict=False)
    protocol: MqttProtocol = MqttProtocol.V5
    client_id: str = Field(default="", max_length=65535)
    username: str = ""
    password_file: str = ""
    tls: TlsSection = Field(default_factory=TlsSection)
    # "" only before Settings fills in coap-bridge/<gateway_id>.
    base_topic: str = ""
    keepalive: int = Field(default=30, ge=1, le=65535)
    session_expiry: int = Field(default=86400, ge=0, le=0xFFFFFFFF)
    shared_group: str = ""
    pool_topic: str = "coap-bridge/pool"
    pool_keepalive: int = Field(default=10, ge=1, le=65535)
    pool_receive_maximum: int = Field(default=8, ge=1, le=65535)
    max_queued: int = Field(default=1000, ge=1)

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError('must be a list of "host:port" strings, e.g. ["node1:1883"]')
        return value

    @field_validator("hosts")
    @classmethod
    def _host_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_broker_address(text)
        return tuple(text.strip() for text in value)

    @model_validator(mode="after")
    def _hosts_or_host(self) -> MqttSettings:
        if self.hosts and self.model_fields_set & {"host", "port"}:
            raise ValueError("set either mqtt.hosts or mqtt.host/mqtt.port, not both")
        return self

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: object) -> MqttProtocol:
        # YAML reads `5` as an int and `3.1.1` as a string.
        if isinstance(value, MqttProtocol):
            return value
        if (isinstance(value, int) and not isinstance(value, bool) and value == 5) or value == "5":
            return MqttProtocol.V5
        if value == "3.1.1":
            return MqttProtocol.V311
        raise ValueError(f"must be 5 or 3.1.1, not {value!r}")

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        path = resolve_path(value, info)
        problem = password_file_problem(path)
        if problem is not None:
            raise ValueError(problem)
        return path

    @field_validator("base_topic")
    @classmethod
    def _base_topic(cls, value: str) -> str:
        return _topic_name(value) if value else value

    @field_validator("pool_topic")
    @classmethod
    def _pool_topic(cls, value: str) -> str:
        return _topic_name(value)

    @field_validator("shared_group")
    @classmethod
    def _shared_group(cls, value: str) -> str:
        # MQTT 5 §4.8.2: a ShareName must not contain '/', '+' or '#'.
        if any(char in value for char in "/+#\x00"):
            raise ValueError(f"shared group {value!r} must not contain '/', '+', '#' or NUL")
        return value


class OscoreSettings(Section):
    context_dir: str = Field(min_length=1)

    @field_validator("context_dir")
    @classmethod
    def _usable_context(cls, value: str, info: ValidationInfo) -> str:
        path = os.path.normpath(resolve_path(value, info))
        problem = oscore_context_problem(path)
        if problem is not None:
            raise ValueError(problem)
        return path


class CoapServer(Section):
    host: HostName
    port: Port = 5683
    # Requests to this alias go through this modem ("" = any; see `modems`).
    modem: str = ""
    oscore: OscoreSettings | None = None
    # Unset: required exactly when `oscore` is set.
    require_oscore: bool | None = None

    @model_validator(mode="after")
    def _requirement_needs_a_context(self) -> CoapServer:
        if self.require_oscore and self.oscore is None:
            raise ValueError(
                "require_oscore is true but oscore.context_dir is not set: "
                "give the server a security context"
            )
        return self

    @property
    def requires_oscore(self) -> bool:
        """Plaintext requests to this server's host:port are refused."""
        return self.oscore is not None if self.require_oscore is None else self.require_oscore


class CoapSettings(Section):
    servers: dict[AliasName, CoapServer] = Field(default_factory=dict)
    allow_hosts: tuple[HostName, ...] = Field(default=(), strict=False)
    # max_timeout comes first so that default_timeout can be checked against it.
    max_timeout: Seconds = 300.0
    default_timeout: Seconds = 30.0
    max_in_flight: int = Field(default=64, ge=1)
    max_request_payload: int = Field(default=65536, ge=1, le=16 << 20)

    @field_validator("servers", "allow_hosts", mode="before")
    @classmethod
    def _empty_when_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return {} if info.field_name == "servers" else ()
        return value

    @field_validator("default_timeout")
    @classmethod
    def _within_max(cls, value: float, info: ValidationInfo) -> float:
        maximum = info.data.get("max_timeout")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value:g} s exceeds coap.max_timeout ({maximum:g} s)")
        return value

    @model_validator(mode="after")
    def _one_alias_per_context(self) -> CoapSettings:
        # A context used for two servers would reuse its nonces (RFC 8613 §7.2.1).
        named_by: dict[str, str] = {}
        for alias, server in self.servers.items():
            if server.oscore is None:
                continue
            context = os.path.realpath(server.oscore.context_dir)
            first = named_by.setdefault(context, alias)
            if first != alias:
                raise ValueError(
                    f"servers {first} and {alias} name the same OSCORE context {context}; "
                    "a context must never be shared or copied: give each server its own"
                )
        return self

    def is_allowed_host(self, host: str) -> bool:
        """`host` (normalized) is a configured server's host or in allow_hosts."""
        return host in self.allow_hosts or any(s.host == host for s in self.servers.values())

    def oscore_required_by(self, host: str, port: int) -> str | None:
        """The alias whose `require_oscore` covers `host`:`port`, if any."""
        for alias, server in self.servers.items():
            if server.port == port and server.host == host and server.requires_oscore:
                return alias
        return None

    def oscore_context_dirs(self) -> dict[str, str]:
        """alias -> OSCORE context directory, for the aliases that have one."""
        return {
            alias: server.oscore.context_dir
            for alias, server in self.servers.items()
            if server.oscore is not None
        }


class MetricsSettings(Section):
    """Prometheus metrics: off unless `listen` names an address."""

    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            listen_address(value)
        return value


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


_SECTIONS = ("modem", "mqtt", "coap", "metrics", "logging")


class Settings(Section):
    gateway_id: str
    # One modem, or a list of named ones; `modems` holds them all once validated.
    modem: ModemSettings | None = None
    modems: tuple[ModemSettings, ...] = Field(default=(), strict=False)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    coap: CoapSettings = Field(default_factory=CoapSettings)
    dedupe_window: float = Field(default=600.0, ge=0, allow_inf_nan=False)
    # A directory of the bridge's own: the dedupe journal survives crashes there.
    state_dir: str = ""
    health_interval: Seconds = 60.0
    # Kept below the unit's TimeoutStopSec (30 s) minus the MQTT goodbye (about 6 s).
    shutdown_grace: Seconds = Field(default=20.0, le=600)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Fill gateway_id, mqtt.client_id and mqtt.base_topic from the host name."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # A section whose keys are all commented out reads as null: take the defaults.
        for section in _SECTIONS:
            if section in data and data[section] is None:
                data[section] = {}
        if data.get("modems", ()) is None:
            data["modems"] = ()
        listed = data.get("modems")
        if isinstance(listed, list | tuple) and list(listed) == [data.get("modem")]:
            del data["modems"]  # model_dump() of validated settings: the one modem twice
        if data.get("gateway_id") in (None, ""):
            data["gateway_id"] = socket.gethostname()
        gateway_id = data["gateway_id"]
        mqtt = data.get("mqtt", {})
        if not isinstance(gateway_id, str) or _gateway_id_problem(gateway_id):
            return data  # reported on gateway_id; no derived topic to complain about
        if not isinstance(mqtt, dict):
            return data
        mqtt = dict(mqtt)
        if mqtt.get("client_id") in (None, ""):
            mqtt["client_id"] = f"mqtt-coap-bridge-{gateway_id}"
        if mqtt.get("base_topic") in (None, ""):
            mqtt["base_topic"] = f"coap-bridge/{gateway_id}"
        data["mqtt"] = mqtt
        return data

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str, info: ValidationInfo) -> str:
        return resolve_path(value, info) if value else value

    @field_validator("gateway_id")
    @classmethod
    def _gateway_id(cls, value: str) -> str:
        problem = _gateway_id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _modem_list(self) -> Settings:
        modems = modems_from_sections(self.modem, self.modems)
        servers = {alias: server.modem for alias, server in self.coap.servers.items()}
        problem = unknown_modem_problem(servers, modems)
        if problem is not None:
            raise ValueError(problem)
        # Frozen: the normalised list is set once, here, before anyone reads it.
        object.__setattr__(self, "modems", modems)
        if self.modem is not None:
            object.__setattr__(self, "modem", modems[0])
        return self

    def modem_named(self, name: str) -> ModemSettings | None:
        return next((modem for modem in self.modems if modem.name == name), None)


def _gateway_id_problem(gateway_id: str) -> str | None:
    # It becomes one topic level of the default base topic.
    if any(char in gateway_id for char in "/+#\x00"):
        return (
            f"gateway id {gateway_id!r} must not contain '/', '+', '#' or NUL "
            "(it is a topic level); set gateway_id explicitly"
        )
    return None
