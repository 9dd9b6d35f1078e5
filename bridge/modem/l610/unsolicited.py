"""What an unsolicited line from an L610 means, sans-IO: a boot line (the modem
restarted), a late final result (of a command given up on), or a line nobody knows.

Boot lines: `RDY` (RT-Thread at_device, `class/l610/`, takes it as the start-up URC),
`+CPIN: <state>` and `+SIM READY` (SIM state announced at start-up), `+CFUN: 1`.
"""

from __future__ import annotations

from enum import Enum

from bridge.at.results import parse_final_result

__all__ = ["BOOT_PREFIXES", "Unsolicited", "classify"]

_BOOT_LINES = frozenset({"RDY", "+CFUN: 1", "+SIM READY"})
# Routed to the driver even in the middle of another command's reply.
BOOT_PREFIXES = ("+CPIN:", "+CFUN:", "+SIM READY")


class Unsolicited(Enum):
    BOOT = "boot"
    LATE_RESULT = "late result"
    UNKNOWN = "unknown"


def classify(line: str) -> Unsolicited:
    text = line.strip()
    if text in _BOOT_LINES or text.startswith(BOOT_PREFIXES):
        return Unsolicited.BOOT
    if parse_final_result(text) is not None:
        return Unsolicited.LATE_RESULT
    return Unsolicited.UNKNOWN
