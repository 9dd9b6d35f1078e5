"""CoAP over the L610: an aiocoap transport, its instance pool, and `ModemCoap`."""

from bridge.coap.client import CoapTransportSettings, ModemCoap
from bridge.coap.observation import Observation
from bridge.coap.stats import CoapStats

__all__ = ["CoapStats", "CoapTransportSettings", "ModemCoap", "Observation"]
