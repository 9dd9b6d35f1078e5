"""Health readings of the L610 driver, as published in the bridge's health object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    """What bring-up learns about the modem and its network attachment."""

    model: str
    firmware: str
    imei: str
    rssi_dbm: int | None
    registered: bool
    ip: str | None


@dataclass(frozen=True, slots=True)
class ModemHealth:
    """A snapshot of the driver: the `modem` member of the MQTT health object.

    `state` says in words why the modem is not ready (or "ready"); `generation` counts
    resets and port losses, every coap_id of an older generation being gone. The AT and
    line counters are the AT engine's (they start over when the layers restart).
    """

    port: str
    model: str
    firmware: str
    imei: str
    ready: bool
    registered: bool
    rssi_dbm: int | None
    ip: str | None
    resets: int
    malformed_urcs: int
    unknown_lines: int
    datagrams_in: int
    generation: int
    state: str
    at_commands: int
    at_timeouts: int
    bytes_in: int
    bytes_out: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def after(self, earlier: ModemCounters) -> ModemHealth:
        """This snapshot with the counts of the drivers this process ran before added."""
        return replace(
            self,
            resets=self.resets + earlier.resets,
            malformed_urcs=self.malformed_urcs + earlier.malformed_urcs,
            unknown_lines=self.unknown_lines + earlier.unknown_lines,
            datagrams_in=self.datagrams_in + earlier.datagrams_in,
        )


@dataclass(frozen=True, slots=True)
class ModemCounters:
    """The counters of `ModemHealth` summed over drivers that have ended, so that a
    restart of the layers (a reload) does not set the process's counts back to 0."""

    resets: int = 0
    malformed_urcs: int = 0
    datagrams_in: int = 0
    unknown_lines: int = 0

    def plus(self, health: ModemHealth) -> ModemCounters:
        return ModemCounters(
            self.resets + health.resets,
            self.malformed_urcs + health.malformed_urcs,
            self.datagrams_in + health.datagrams_in,
            self.unknown_lines + health.unknown_lines,
        )
