"""The simulated L610's CoAP client instances: `AT+GTCOAPOPEN/SEND/CLOSE`, sans-IO.

Strict per the L610 CoAP AT chapter (the rules are listed in README.md here). The
dialect says whether the instances are usable now (SIM present, PDP context active).
"""

from __future__ import annotations

import re

from bridge.simulator.replies import (
    ERROR,
    MAX_DATAGRAM,
    MAX_HOST_LENGTH,
    PENDING,
    CloseInstance,
    OpenInstance,
    Reply,
    SendDatagram,
)

_SEND_PARAMS = re.compile(r'=(\d{1,10}),(\d{1,10}),"([0-9A-Fa-f]*)"')
_OPEN_PARAMS = re.compile(r'="([^"]*)",(\d{1,10})')
_ID_PARAM = re.compile(r"=(\d{1,10})")
_DOTTED_DIGITS = re.compile(r"[0-9.]+")


def is_ipv4_literal(host: str) -> bool:
    """A dotted-quad with octets 0-255 written in 1 to 3 digits (leading zeros allowed)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    return all(1 <= len(part) <= 3 and part.isdigit() and int(part) <= 255 for part in parts)


class CoapInstances:
    """Ids 1..count, the ones open, and the one waiting for the network to open."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"instances must be at least 1, got {count}")
        self.count = count
        self.open_ids: set[int] = set()
        self.opening_id: int | None = None

    def reset(self) -> None:
        self.open_ids = set()
        self.opening_id = None

    def drop_all(self) -> tuple[CloseInstance, ...]:
        """Every instance goes (with the PDP context its sockets were bound to)."""
        effects = tuple(CloseInstance(coap_id) for coap_id in sorted(self.open_ids))
        self.open_ids.clear()
        return effects

    def free_ids(self) -> list[int]:
        taken = self.open_ids if self.opening_id is None else {*self.open_ids, self.opening_id}
        return [coap_id for coap_id in range(1, self.count + 1) if coap_id not in taken]

    def finish_open(self, coap_id: int, ok: bool) -> Reply | None:
        """The reply to the pending OPEN, None when a reset killed that command."""
        if self.opening_id != coap_id:
            return None
        self.opening_id = None
        if not ok:
            return ERROR
        self.open_ids.add(coap_id)
        return Reply(info=(f"+GTCOAPOPEN: {coap_id}",))

    def open(self, suffix: str, *, sim: bool, pdp_active: bool) -> Reply:
        if not sim:
            return ERROR
        if suffix == "?":
            free = self.free_ids() or [0]
            return Reply(info=tuple(f"+GTCOAPOPEN: {coap_id}" for coap_id in free))
        match = _OPEN_PARAMS.fullmatch(suffix)
        if match is None or not pdp_active:
            return ERROR
        host, port = match.group(1), int(match.group(2))
        if not 1 <= len(host) <= MAX_HOST_LENGTH or not 1 <= port <= 65535:
            return ERROR
        if _DOTTED_DIGITS.fullmatch(host) and not is_ipv4_literal(host):
            return ERROR
        free = self.free_ids()
        if not free:
            return ERROR
        self.opening_id = free[0]
        return Reply(final=PENDING, effects=(OpenInstance(free[0], host, port),))

    def send(self, suffix: str, *, sim: bool, pdp_active: bool) -> Reply:
        match = _SEND_PARAMS.fullmatch(suffix)
        if match is None or not sim or not pdp_active:
            return ERROR
        coap_id, length, hex_data = int(match.group(1)), int(match.group(2)), match.group(3)
        if coap_id not in self.open_ids or not 1 <= length <= MAX_DATAGRAM:
            return ERROR
        if len(hex_data) != 2 * length:
            return ERROR
        return Reply(effects=(SendDatagram(coap_id, bytes.fromhex(hex_data)),))

    def close(self, suffix: str, *, sim: bool) -> Reply:
        match = _ID_PARAM.fullmatch(suffix)
        if match is None or not sim:
            return ERROR
        coap_id = int(match.group(1))
        if coap_id not in self.open_ids:
            return ERROR
        self.open_ids.discard(coap_id)
        return Reply(trailing=("+GTCOAPCLOSE: 1",), effects=(CloseInstance(coap_id),))
