"""The one-line summary `check-config` prints for a valid config."""

from __future__ import annotations

from bridge.config.models import Settings


def describe(settings: Settings) -> str:
    """One line for `check-config`."""
    mqtt = settings.mqtt
    transport = f"MQTT {mqtt.protocol.value}" + (", TLS" if mqtt.tls.enabled else "")
    servers = len(settings.coap.servers)
    parts = [
        f"gateway {settings.gateway_id}",
        _modems(settings),
        (f"brokers {', '.join(mqtt.hosts)}" if mqtt.hosts else f"broker {mqtt.host}:{mqtt.port}")
        + f" ({transport})",
        f"base topic {mqtt.base_topic}",
        f"{servers} server{'s' if servers != 1 else ''}",
    ]
    protected = len(settings.coap.oscore_context_dirs())
    if protected:
        parts[-1] += f" ({protected} with OSCORE)"
    if settings.coap.allow_hosts:
        count = len(settings.coap.allow_hosts)
        parts.append(f"{count} allowed host{'s' if count != 1 else ''}")
    if mqtt.shared_group:
        parts.append(f"shared group {mqtt.shared_group} on {mqtt.pool_topic}")
    return "config OK: " + ", ".join(parts)


def _modems(settings: Settings) -> str:
    if settings.modem is not None:
        return f"modem {settings.modem.port}"
    return ", ".join(f"modem {modem.name} {modem.port}" for modem in settings.modems)
