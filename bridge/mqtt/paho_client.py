"""The paho-mqtt client and CONNECT arguments the session needs, built from settings.

Manual acks, no silent downgrade to MQTT 3.1, the Last Will set (unless the connection
does not announce the status); MQTT 5 connects with `clean_start` from the settings
(False but for the pool connection) and `SessionExpiryInterval` (plus `ReceiveMaximum`
when set), 3.1.1 with `clean_session` likewise.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.mqtt.brokers import BrokerAddress
from bridge.mqtt.settings import MqttClientSettings, MqttProtocol
from bridge.mqtt.tls import tls_context


def new_paho_client(settings: MqttClientSettings, will_topic: str, will: bytes) -> paho.Client:
    """A paho client with no callbacks set; `will` is published retained, QoS 1."""
    mqtt5 = settings.protocol is MqttProtocol.V5
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        clean_session=None if mqtt5 else settings.clean_start,
        protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
        # False: never silently downgrade to MQTT 3.1 on a refused CONNECT.
        reconnect_on_failure=False,
        manual_ack=True,
    )
    client.connect_timeout = settings.connect_timeout
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
    if settings.announce_status:
        client.will_set(will_topic, will, qos=1, retain=True)
    return client


def connect_async(
    client: paho.Client, settings: MqttClientSettings, address: BrokerAddress
) -> None:
    """Give `client` one broker node and the CONNECT arguments; `reconnect()` then
    connects there (paho allows this whenever no link is up)."""
    mqtt5 = settings.protocol is MqttProtocol.V5
    clean_start: Any = settings.clean_start if mqtt5 else paho.MQTT_CLEAN_START_FIRST_ONLY
    client.connect_async(
        address.host,
        address.port,
        keepalive=settings.keepalive,
        clean_start=clean_start,
        properties=_connect_properties(settings) if mqtt5 else None,
    )


def _connect_properties(settings: MqttClientSettings) -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry
    if settings.receive_maximum:
        properties.ReceiveMaximum = settings.receive_maximum
    return properties
