"""The Fibocom L610 driver: its GTCOAP/MIPCALL codec, bring-up, supervision and driver."""

from bridge.modem.l610.driver import L610

__all__ = ["L610"]
