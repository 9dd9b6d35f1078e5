"""The MQTT side of the bridge: the broker session and the request front.

`bridge.mqtt.client` is the session (acks, subscriptions, reconnect), `outbox` the
publish queue, `plumbing` the socket on the loop; `front` takes requests to a
`RequestHandler`, `answers` routes and publishes their answers, `health` the health
message, `topics` the topic names of the contract.
"""

from bridge.mqtt.answers import Routing
from bridge.mqtt.client import MqttClient
from bridge.mqtt.envelope import Envelope, RequestHandler
from bridge.mqtt.front import RequestFront
from bridge.mqtt.incoming import IncomingMessage
from bridge.mqtt.outbox import ClientClosed, MqttClientError, PublishDropped, PublishRejected
from bridge.mqtt.settings import FrontSettings, MqttClientSettings, MqttProtocol, TlsSettings
from bridge.mqtt.stats import MqttStats

__all__ = [
    "ClientClosed",
    "Envelope",
    "FrontSettings",
    "IncomingMessage",
    "MqttClient",
    "MqttClientError",
    "MqttClientSettings",
    "MqttProtocol",
    "MqttStats",
    "PublishDropped",
    "PublishRejected",
    "RequestFront",
    "RequestHandler",
    "Routing",
    "TlsSettings",
]
