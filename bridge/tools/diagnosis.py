"""What `doctor` concludes from a modem's answers, sans-IO: verdicts and what to do.

Every function takes what the modem said and returns a `Finding`: whether it is good,
what it means in words and, when it is not good, what the user should do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from bridge.modem.ts27007 import REGISTERED_STATES, rssi_to_dbm


class Verdict(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    NOT_RUN = "not run"

    @property
    def passed(self) -> bool:
        return self in (Verdict.OK, Verdict.WARN)


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    detail: str
    remedy: str = ""


# 3GPP TS 27.007 §7.2 / §10.1.19 / §10.1.20 <stat>, and what each asks of the user.
REGISTRATION_STATES: dict[int, tuple[str, str]] = {
    0: (
        "not registered, not searching",
        "the modem is not trying: check the SIM and that the radio is on (AT+CFUN? is 1)",
    ),
    1: ("registered, home network", ""),
    2: (
        "not registered, searching",
        "check the antenna, the coverage at this place and the APN",
    ),
    3: (
        "registration denied",
        "the network refuses this SIM: check its subscription (LTE/data) with the operator",
    ),
    4: ("unknown", "check the antenna and the coverage"),
    5: ("registered, roaming", ""),
}

# CME codes a SIM check meets, and what to do about each.
SIM_REMEDIES: dict[int, str] = {
    10: "no SIM card: insert one, or check the SIM tray",
    11: "the SIM asks for its PIN: disable the PIN lock (in a phone) and try again",
    12: "the SIM is locked (PUK required): unlock it in a phone",
    13: "the SIM card failed: reseat it, or try another one",
    14: "the SIM is busy starting up: wait a few seconds and run doctor again",
    15: "wrong SIM: check the card",
}

SIGNAL_FAIR_DBM = -100
SIGNAL_GOOD_DBM = -85

_COAP_VERSION = 1
_TYPE_CON, _TYPE_RST = 0, 3


def registration(prefix: str, stat: int | None) -> str:
    """`+CEREG: 1 (registered, home network)`, or that the modem does not answer it."""
    if stat is None:
        return f"{prefix} not supported"
    words = REGISTRATION_STATES.get(stat, ("unknown state", ""))[0]
    return f"{prefix} {stat} ({words})"


def registration_finding(states: dict[str, int | None], waited: float) -> Finding:
    """Registered when any technology is (1 home, 5 roaming); else why not, and what to do."""
    described = ", ".join(registration(prefix, stat) for prefix, stat in states.items())
    if any(stat in REGISTERED_STATES for stat in states.values()):
        return Finding(Verdict.OK, described)
    known = [stat for stat in states.values() if stat is not None]
    remedy = REGISTRATION_STATES.get(known[0], ("", "check the antenna and the APN"))[1]
    if not known:
        remedy = "the modem answers no registration query: check its firmware"
    return Finding(
        Verdict.FAIL,
        f"not registered after {waited:g} s: {described}",
        f"not registered after {waited:g} s: {remedy}",
    )


def signal_finding(rssi: int) -> Finding:
    """CSQ <rssi> as dBm with a verdict (99: not measurable)."""
    dbm = rssi_to_dbm(rssi)
    if dbm is None:
        return Finding(
            Verdict.FAIL,
            f"no signal measured (rssi {rssi})",
            "no signal: connect the antenna (the main LTE connector) and check the coverage",
        )
    if dbm < SIGNAL_FAIR_DBM:
        return Finding(
            Verdict.WARN,
            f"{dbm} dBm (rssi {rssi}): poor",
            "poor signal: expect losses; move the antenna or use a better one",
        )
    words = "good" if dbm >= SIGNAL_GOOD_DBM else "fair"
    return Finding(Verdict.OK, f"{dbm} dBm (rssi {rssi}): {words}")


def sim_finding(state: str | None, code: int | None, words: str) -> Finding:
    """`+CPIN: READY` is good; any other state or CME error says what to do."""
    if state == "READY":
        return Finding(Verdict.OK, "SIM ready")
    if state is not None:
        return Finding(
            Verdict.FAIL,
            f"SIM state {state}",
            f"the SIM is not ready ({state}): remove its PIN lock or check the card",
        )
    remedy = SIM_REMEDIES.get(code or -1, f"the modem cannot use the SIM ({words}): reseat it")
    return Finding(Verdict.FAIL, f"SIM not usable: {words}", remedy)


def coap_ping(message_id: int) -> bytes:
    """An empty confirmable message (RFC 7252 §4.2, a "CoAP ping"): 4 bytes, no token."""
    return struct.pack("!BBH", _COAP_VERSION << 6 | _TYPE_CON << 4, 0, message_id)


def is_reset_for(datagram: bytes, message_id: int) -> bool:
    """Whether `datagram` is the RST a CoAP endpoint answers a ping `message_id` with."""
    if len(datagram) < 4:
        return False
    first, _code, mid = struct.unpack("!BBH", datagram[:4])
    return bool(first >> 6 == _COAP_VERSION and (first >> 4) & 3 == _TYPE_RST and mid == message_id)
