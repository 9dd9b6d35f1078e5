"""Sans-IO parsing of the generic 3GPP TS 27.007 replies (identity, SIM, signal, registration).

Shared by every driver and the doctor: nothing here is vendor-specific or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.errors import UnexpectedReply

# Registration <stat> values that mean "usable": 1 home network, 5 roaming (3GPP 27.007).
REGISTERED_STATES = frozenset({1, 5})


def value_after(prefix: str, line: str) -> str:
    return line[len(prefix) :].strip() if line.startswith(prefix) else line.strip()


def find_value(prefix: str, lines: Iterable[str], command: str) -> str:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise UnexpectedReply(f"no {prefix} line in the modem's answer to {command}")


def parse_identity(lines: Iterable[str], prefix: str) -> str:
    """The text of AT+CGMM/CGMR/CGSN; some firmware prefixes it (`+CGSN: "..."`)."""
    for line in lines:
        text = value_after(prefix, line).strip('"').strip()
        if text:
            return text
    return ""


def parse_cpin(lines: Iterable[str]) -> str:
    """The SIM state word of `+CPIN: <code>` (READY, SIM PIN, ...)."""
    return find_value("+CPIN:", lines, "AT+CPIN?")


def rssi_to_dbm(rssi: int) -> int | None:
    """3GPP 27.007 <rssi>: 0 is -113 dBm or less, 31 is -51 dBm or more, 99 unknown."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    return None


def parse_csq(lines: Iterable[str]) -> int | None:
    """Signal strength in dBm from `+CSQ: <rssi>,<ber>`, None when the modem does not know."""
    text = find_value("+CSQ:", lines, "AT+CSQ")
    rssi = text.split(",")[0].strip()
    if not (rssi.isascii() and rssi.isdigit()):
        raise UnexpectedReply(f"AT+CSQ answered an unreadable rssi {text!r}")
    return rssi_to_dbm(int(rssi))


def parse_registration(lines: Iterable[str], prefix: str) -> int:
    """<stat> from a `+CEREG: <n>,<stat>[,...]` / `+CGREG:` query answer.

    The unsolicited form has no <n> (`+CEREG: <stat>`); a single field is read as stat.
    """
    text = find_value(prefix, lines, f"AT{prefix[:-1]}?")
    fields = [field.strip() for field in text.split(",")]
    stat = fields[1] if len(fields) >= 2 else fields[0]
    if not (stat.isascii() and stat.isdigit()):
        raise UnexpectedReply(f"AT{prefix[:-1]}? answered an unreadable stat {text!r}")
    return int(stat)
