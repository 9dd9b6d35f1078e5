"""The +CME ERROR codes of 3GPP TS 27.007 §9.2 and their words, as data.

A modem in numeric mode (`AT+CMEE=1`, or firmware without the verbose mode) answers
`+CME ERROR: 10`; `bridge.at.results` adds the words ("SIM not inserted") so that every
error message reads the same whatever the mode.
"""

from __future__ import annotations

__all__ = ["CME_ERRORS"]

# The 3GPP TS 27.007 §9.2.1 codes a modem driver meets in practice; used to fill the
# number in text mode (AT+CMEE=2) and the words in numeric mode (AT+CMEE=1).
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    50: "incorrect parameters",
    100: "unknown",
    # §9.2.2, packet domain: what a PDP activation (AT+MIPCALL) fails with.
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
}
