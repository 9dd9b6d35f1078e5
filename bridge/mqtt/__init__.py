"""The MQTT side of the bridge: a paho-mqtt client on asyncio and the request front.

See `bridge.mqtt.client` (session, acks, reconnect, queue) and `bridge.mqtt.front`
(routing, dedupe, back-pressure, the `RequestHandler` interface).
"""

from bridge.mqtt.client import IncomingMessage, MqttClient
from bridge.mqtt.front import Envelope, FrontCounters, RequestFront, RequestHandler, Routing
from bridge.mqtt.outbox import ClientClosed, MqttClientError, PublishDropped, PublishRejected
from bridge.mqtt.settings import FrontSettings, MqttClientSettings, MqttProtocol, TlsSettings

__all__ = [
    "ClientClosed",
    "Envelope",
    "FrontCounters",
    "FrontSettings",
    "IncomingMessage",
    "MqttClient",
    "MqttClientError",
    "MqttClientSettings",
    "MqttProtocol",
    "PublishDropped",
    "PublishRejected",
    "RequestFront",
    "RequestHandler",
    "Routing",
    "TlsSettings",
]
