"""What the CoAP layer counts: one table, kept by the transport and the instance pool."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CoapStats:
    """The transport and the pool count into one; `ModemCoap.stats()` returns a copy."""

    # Filled in by `ModemCoap.stats()`: instances open, requests and observations
    # running, and requests made so far.
    instances_open: int = 0
    in_flight: int = 0
    observations: int = 0
    requests: int = 0
    # Counters, which only ever grow: datagrams through the modem.
    datagrams_out: int = 0
    datagrams_in: int = 0
    max_datagram_out: int = 0
    send_failures: int = 0
    # Datagrams dropped: unreadable as CoAP, or for an instance that is not ours now.
    undecodable_in: int = 0
    unknown_instance_in: int = 0
    # The instance pool: opened, refused by the modem, closed and why, lost to resets.
    instances_opened: int = 0
    instances_open_failures: int = 0
    instances_closed_idle: int = 0
    instances_closed_lru: int = 0
    instances_lost_in_resets: int = 0

    def as_dict(self) -> dict[str, int]:
        """The health object's `coap` member (see the MQTT contract)."""
        return {
            "instances_open": self.instances_open,
            "in_flight": self.in_flight,
            "observations": self.observations,
        }
