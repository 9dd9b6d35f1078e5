"""The daemon's configuration: YAML file -> validated, frozen `Settings`.

`load_config` raises `ConfigError` listing every problem with its key path and line;
`load_password` reads `mqtt.password_file`; `describe` is the `check-config` line.
"""

from bridge.config.hosts import listen_address, normalize_host
from bridge.config.loader import load_config
from bridge.config.models import (
    CoapServer,
    CoapSettings,
    LoggingSettings,
    MetricsSettings,
    ModemSettings,
    MqttSettings,
    Settings,
)
from bridge.config.password import load_password, password_file_problem
from bridge.config.summary import describe
from bridge.mqtt.settings import MqttProtocol, TlsSettings

__all__ = [
    "CoapServer",
    "CoapSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ModemSettings",
    "MqttProtocol",
    "MqttSettings",
    "Settings",
    "TlsSettings",
    "describe",
    "listen_address",
    "load_config",
    "load_password",
    "normalize_host",
    "password_file_problem",
]
