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
    MqttSettings,
    OscoreSettings,
    Settings,
)
from bridge.config.modems import ModemSettings
from bridge.config.oscore import oscore_context_problem
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
    "OscoreSettings",
    "Settings",
    "TlsSettings",
    "describe",
    "listen_address",
    "load_config",
    "load_password",
    "normalize_host",
    "oscore_context_problem",
    "password_file_problem",
]
