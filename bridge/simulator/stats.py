"""What the simulator counts, for tests and the benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    """Running totals, kept across reboots and unplugs."""

    bytes_in: int = 0
    bytes_out: int = 0
    # Output thrown away because nobody read the port (pty full) or it was unplugged.
    bytes_dropped: int = 0
    datagrams_out: int = 0
    datagrams_in: int = 0
    max_datagram_out: int = 0
    datagrams_lost: int = 0
    urcs: int = 0
    reboots: int = 0
    unplugs: int = 0


@dataclass(frozen=True, slots=True)
class SimulatorStats:
    """A snapshot of the simulator's counters.

    bytes_in/bytes_out: bytes read from / written to the pty. commands: command lines
    interpreted. datagrams_out: datagrams accepted by AT+GTCOAPSEND; datagrams_in:
    datagrams received on the instances' UDP sockets; max_datagram_out: the largest
    datagram ever sent; datagrams_lost: datagrams dropped by the simulated loss (both
    directions); urcs: +GTCOAPDATA lines written; instances_open: UDP sockets open now.
    """

    bytes_in: int
    bytes_out: int
    bytes_dropped: int
    commands: int
    datagrams_out: int
    datagrams_in: int
    max_datagram_out: int
    datagrams_lost: int
    urcs: int
    instances_open: int
    reboots: int
    unplugs: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
