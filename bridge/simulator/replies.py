"""What the simulated L610 answers with: identity constants, CME codes, reply values.

A `Reply` is information lines, a final result, lines trailing it and effects for the
shell (`OpenInstance`, `SendDatagram`, `CloseInstance` on real UDP sockets).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DATAGRAM = 512
MAX_HOST_LENGTH = 255
MAX_LINE = 2048

MANUFACTURER = "Fibocom Wireless Inc."
MODEL = "L610"
FIRMWARE = "16000.1000.00.96.20.04"
IMEI = "867584030123454"
IMSI = "460001234567890"
PDP_ADDRESS = "10.91.0.2"

# 3GPP TS 27.007 §9.2.1 codes this modem answers with.
CME_OPERATION_NOT_ALLOWED = 3
CME_SIM_NOT_INSERTED = 10
CME_NO_NETWORK_SERVICE = 30
CME_TEXT = {
    CME_OPERATION_NOT_ALLOWED: "operation not allowed",
    CME_SIM_NOT_INSERTED: "SIM not inserted",
    CME_NO_NETWORK_SERVICE: "no network service",
}


@dataclass(frozen=True, slots=True)
class OpenInstance:
    """Resolve `host`, connect a UDP socket to it, then call `finish_open(coap_id, ok)`."""

    coap_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send `data` as one UDP datagram on instance `coap_id`'s socket."""

    coap_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseInstance:
    """Close instance `coap_id`'s socket."""

    coap_id: int


Effect = OpenInstance | SendDatagram | CloseInstance
Output = bytes | Effect


@dataclass(frozen=True, slots=True)
class Reply:
    info: tuple[str, ...] = ()
    final: str = "OK"
    # Lines the modem writes after the final result (CLOSE confirmation, MIPCALL address).
    trailing: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()


OK = Reply()
ERROR = Reply(final="ERROR")
# Waiting for the network: finish_open() writes the reply.
PENDING = ""


def frame(lines: list[str] | tuple[str, ...]) -> bytes:
    """Lines as the modem writes them: each as `\\r\\n<line>\\r\\n`."""
    return "".join(f"\r\n{line}\r\n" for line in lines).encode("ascii")
