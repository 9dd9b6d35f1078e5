"""YAML configuration -> typed, validated, frozen settings.

The accepted shape is the contract's example (kept verbatim as
`tests/config/contract-example.yaml`, documented key by key in
`config/config.example.yaml`); keys may be added, never removed. `load_config` reports
every problem at once, each with its dotted key path and line in the file, e.g.
``mqtt.tls.ca_file (line 17): file /etc/ca.pem does not exist``.

Relative file paths (`mqtt.password_file`, `mqtt.tls.*_file`) are resolved against the
directory of the config file, and stored absolute.

Several modems: `modem` holds one modem today and `Settings.modems` already exposes the
list the service iterates over. A later version adds a top-level `modems:` list (one
entry per modem, same keys) as an alternative to `modem`; nothing else has to change.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.errors import ConfigError
from bridge.mqtt.topics import topic_problem

MAX_CONFIG_BYTES = 1 << 20
# Walking the YAML node tree expands aliases; a budget stops alias bombs and cycles.
_MAX_YAML_NODES = 100_000

_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_ALIAS = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,61}[a-z0-9_])?$")


class MqttProtocol(StrEnum):
    V5 = "5"
    V311 = "3.1.1"


def normalize_host(text: str) -> str:
    """A CoAP target host as compared and stored: lowercase name, or canonical IP.

    IPv6 literals may be given with or without brackets and are stored without.
    Raises ValueError for anything that is neither.
    """
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(f"{text!r}: IPv6 zone ids are not supported")
        return str(address)
    name = candidate.lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is not a host name or IP address")
    return name


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
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Section(BaseModel):
    # strict: YAML already types scalars; `port: "1883"` or `apn: 1234` is a mistake
    # worth reporting rather than guessing.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _resolve_path(value: str, info: ValidationInfo) -> str:
    path = Path(value)
    base_dir = (info.context or {}).get("base_dir")
    if not path.is_absolute() and isinstance(base_dir, Path):
        path = base_dir / path
    return str(path)


def password_file_problem(path: str) -> str | None:
    """Why `path` cannot hold the MQTT password, or None if it can."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return f"password file {path} does not exist"
    except OSError as exc:
        return f"password file {path} cannot be read ({exc.strerror})"
    if not stat.S_ISREG(status.st_mode):
        return f"password file {path} is not a regular file"
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o044:
        return (
            f"password file {path} is readable by group/others (mode {mode:04o}); "
            f"run chmod 600 {path}"
        )
    return None


class ModemSettings(_Section):
    port: str = Field(min_length=1)
    baudrate: int = Field(default=115200, ge=1)
    apn: str = ""
    command_timeout: Seconds = 5.0
    registration_timeout: Seconds = 60.0
    max_instances: int = Field(default=4, ge=1)
    instance_idle_close: Seconds = 300.0


class TlsSettings(_Section):
    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _existing_file(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        path = _resolve_path(value, info)
        if info.data.get("enabled") and not os.path.isfile(path):
            raise ValueError(f"file {path} does not exist (mqtt.tls.enabled is true)")
        return path

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


class MqttSettings(_Section):
    host: str = Field(default="localhost", min_length=1)
    port: Port = 1883
    protocol: MqttProtocol = MqttProtocol.V5
    client_id: str = Field(default="", max_length=65535)
    username: str = ""
    password_file: str = ""
    tls: TlsSettings = Field(default_factory=TlsSettings)
    # "" only before Settings fills in coap-bridge/<gateway_id>.
    base_topic: str = ""
    keepalive: int = Field(default=30, ge=1, le=65535)
    session_expiry: int = Field(default=86400, ge=0, le=0xFFFFFFFF)
    shared_group: str = ""
    pool_topic: str = "coap-bridge/pool"
    max_queued: int = Field(default=1000, ge=1)

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
        path = _resolve_path(value, info)
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


class CoapServer(_Section):
    host: HostName
    port: Port = 5683


class CoapSettings(_Section):
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

    def is_allowed_host(self, host: str) -> bool:
        """`host` (normalized) is a configured server's host or in allow_hosts."""
        return host in self.allow_hosts or any(s.host == host for s in self.servers.values())


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


_SECTIONS = ("modem", "mqtt", "coap", "logging")


class Settings(_Section):
    gateway_id: str
    modem: ModemSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    coap: CoapSettings = Field(default_factory=CoapSettings)
    dedupe_window: float = Field(default=600.0, ge=0, allow_inf_nan=False)
    health_interval: Seconds = 60.0
    # Kept below the unit's TimeoutStopSec (30 s) minus the MQTT goodbye (about 6 s).
    shutdown_grace: Seconds = Field(default=20.0, le=600)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

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

    @field_validator("gateway_id")
    @classmethod
    def _gateway_id(cls, value: str) -> str:
        problem = _gateway_id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def modems(self) -> tuple[ModemSettings, ...]:
        """Every modem this daemon drives (one today; see the module docstring)."""
        return (self.modem,)


def _gateway_id_problem(gateway_id: str) -> str | None:
    # It becomes one topic level of the default base topic.
    if any(char in gateway_id for char in "/+#\x00"):
        return (
            f"gateway id {gateway_id!r} must not contain '/', '+', '#' or NUL "
            "(it is a topic level); set gateway_id explicitly"
        )
    return None


# --- loading ----------------------------------------------------------------------------

LineMap = dict[tuple[str, ...], int]


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate a config file. Raises ConfigError listing every problem."""
    source = str(path)
    try:
        with open(path, "rb") as config_file:
            raw = config_file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"file is larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"file is not UTF-8 (byte {exc.start})"]) from None
    data, lines, problems = _parse_yaml(source, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append("(top level) (line 1): must be a mapping of keys, as in the example")
        raise ConfigError(source, problems)
    context = {"base_dir": Path(source).absolute().parent}
    try:
        settings = Settings.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(_describe_errors(exc, lines))
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return settings


def _parse_yaml(source: str, text: str) -> tuple[object, LineMap, list[str]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        # The document itself: where a missing top-level key is reported.
        lines: LineMap = {(): node.start_mark.line + 1}
        problems: list[str] = []
        _index_lines(node, (), lines, problems, [_MAX_YAML_NODES])
        if problems:
            raise ConfigError(source, problems)
        return loader.construct_document(node), lines, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(source, [f"{where}YAML syntax error: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML error: {exc}"]) from None
    finally:
        loader.dispose()


def _index_lines(
    node: yaml.Node,
    path: tuple[str, ...],
    lines: LineMap,
    problems: list[str],
    budget: list[int],
) -> None:
    """Record the line of every key path; report duplicate keys (PyYAML keeps the last)."""
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            problems.append(f"document has more than {_MAX_YAML_NODES} nodes (aliases expanded)")
        return
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_seen and key != "<<":
                dotted = ".".join((*path, key))
                problems.append(
                    f"{dotted} (line {line}): duplicate key (first at line {first_seen[key]})"
                )
            first_seen.setdefault(key, line)
            lines.setdefault((*path, key), line)
            _index_lines(value_node, (*path, key), lines, problems, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, str(index)), item.start_mark.line + 1)
            _index_lines(item, (*path, str(index)), lines, problems, budget)


def _describe_errors(exc: ValidationError, lines: LineMap) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"] if part != "[key]")
        dotted = ".".join(loc) or "(top level)"
        line = _line_of(loc, lines)
        where = f" (line {line})" if line is not None else ""
        problems.append(f"{dotted}{where}: {_error_message(error, loc)}")
    return problems


def _line_of(loc: tuple[str, ...], lines: LineMap) -> int | None:
    # A missing key has no line of its own: point at the section that lacks it.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _error_message(error: Any, loc: tuple[str, ...]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (known keys: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    message = str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f" (got {value!r})"
    return message


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = Settings
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        field = model.model_fields.get(part) if is_model else None
        if field is None:
            return []
        model = field.annotation
        if get_origin(model) is dict:
            if not parts:
                return []  # free-form keys (server aliases)
            parts.pop(0)
            model = get_args(model)[1]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def load_password(settings: Settings) -> str | None:
    """The MQTT password from `mqtt.password_file`, or None when none is configured."""
    path = settings.mqtt.password_file
    if not path:
        return None
    problem = password_file_problem(path)
    if problem is not None:
        raise ConfigError(path, [problem])
    try:
        with open(path, encoding="utf-8") as password_file:
            password = password_file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"password file {path} cannot be read ({exc})"]) from None
    # Editors add a final newline; it is never part of the password.
    return password.removesuffix("\n").removesuffix("\r")


def describe(settings: Settings) -> str:
    """One line for `check-config`."""
    mqtt = settings.mqtt
    transport = f"MQTT {mqtt.protocol.value}" + (", TLS" if mqtt.tls.enabled else "")
    servers = len(settings.coap.servers)
    parts = [
        f"gateway {settings.gateway_id}",
        ", ".join(f"modem {modem.port}" for modem in settings.modems),
        f"broker {mqtt.host}:{mqtt.port} ({transport})",
        f"base topic {mqtt.base_topic}",
        f"{servers} server{'s' if servers != 1 else ''}",
    ]
    if settings.coap.allow_hosts:
        count = len(settings.coap.allow_hosts)
        parts.append(f"{count} allowed host{'s' if count != 1 else ''}")
    if mqtt.shared_group:
        parts.append(f"shared group {mqtt.shared_group} on {mqtt.pool_topic}")
    return "config OK: " + ", ".join(parts)


__all__ = [
    "CoapServer",
    "CoapSettings",
    "LoggingSettings",
    "ModemSettings",
    "MqttProtocol",
    "MqttSettings",
    "Settings",
    "TlsSettings",
    "describe",
    "load_config",
    "load_password",
    "normalize_host",
    "password_file_problem",
]
