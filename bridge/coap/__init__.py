"""CoAP over the L610: an aiocoap transport, its instance pool, and `ModemCoap`."""

from bridge.coap.client import CoapStats, CoapTransportSettings, ModemCoap, Observation

__all__ = ["CoapStats", "CoapTransportSettings", "ModemCoap", "Observation"]
