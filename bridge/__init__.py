"""mqtt-coap-bridge: CoAP requests over MQTT, carried by a Fibocom L610 LTE modem."""

__version__ = "0.1.0"
