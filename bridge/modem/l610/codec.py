"""Sans-IO codec for the L610's own commands (GTCOAP, MIPCALL): command text out, values in.

Nothing here does I/O or imports asyncio: each function turns values into one AT
command line, or one reply/URC line into values, and raises a `BridgeError` subclass
for anything that does not follow the documented form (the L610 CoAP AT chapter).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.errors import DatagramTooLarge, InvalidRequest, MalformedUrc, UnexpectedReply
from bridge.modem.driver import Datagram
from bridge.modem.ts27007 import find_value, value_after

# The L610 CoAP chapter: "<data_len>: number of bytes, at most 512", both directions.
MAX_DATAGRAM = 512
MAX_HOST_LENGTH = 255

COAP_DATA_PREFIX = "+GTCOAPDATA:"
COAP_OPEN_PREFIX = "+GTCOAPOPEN:"
COAP_CLOSE_PREFIX = "+GTCOAPCLOSE:"
MIPCALL_PREFIX = "+MIPCALL:"

_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]*")
# Characters that would end or break the quoted host parameter on the wire.
_HOST_FORBIDDEN = re.compile(r'["\r\n\x00]')
_MAX_ID_DIGITS = 9


@dataclass(frozen=True, slots=True)
class PdpState:
    """A `+MIPCALL:` reading: whether the PDP context is active, and its address."""

    active: bool
    ip: str | None


def _unsigned(text: str, line: str, field: str) -> int:
    value = text.strip()
    # str.isdigit alone accepts non-ASCII digits (Arabic-Indic, superscripts) that int()
    # reads or rejects.
    if not value or len(value) > _MAX_ID_DIGITS or not (value.isascii() and value.isdigit()):
        raise MalformedUrc(line, f"{field} is not a decimal number")
    return int(value)


def parse_coap_data(line: str) -> Datagram:
    """Decode `+GTCOAPDATA: <coap_id>,<data_len>,<hex>` and check it.

    The manual leaves the check to the host: `len(hex) == 2 * data_len`, valid hex,
    at most 512 bytes. A quoted hex field is accepted although the manual shows it bare.
    """
    if not line.startswith(COAP_DATA_PREFIX):
        raise MalformedUrc(line, "not a +GTCOAPDATA line")
    fields = line[len(COAP_DATA_PREFIX) :].split(",")
    if len(fields) != 3:
        raise MalformedUrc(line, f"expected 3 fields, got {len(fields)}")
    coap_id = _unsigned(fields[0], line, "coap_id")
    if coap_id == 0:
        raise MalformedUrc(line, "coap_id 0 is never a client instance")
    data_len = _unsigned(fields[1], line, "data_len")
    if data_len == 0:
        raise MalformedUrc(line, "data_len 0: the modem never reports an empty datagram")
    if data_len > MAX_DATAGRAM:
        raise MalformedUrc(line, f"data_len {data_len} is over {MAX_DATAGRAM}")
    hex_text = fields[2].strip()
    if len(hex_text) >= 2 and hex_text[0] == '"' and hex_text[-1] == '"':
        hex_text = hex_text[1:-1]
    if len(hex_text) % 2:
        raise MalformedUrc(line, f"odd-length hex ({len(hex_text)} digits)")
    if len(hex_text) != 2 * data_len:
        raise MalformedUrc(line, f"data_len {data_len} but {len(hex_text) // 2} bytes of hex")
    # bytes.fromhex skips ASCII whitespace, so the digits are checked first.
    if not _HEX_DIGITS.fullmatch(hex_text):
        raise MalformedUrc(line, "hex field holds non-hex characters")
    return Datagram(coap_id, bytes.fromhex(hex_text))


def format_send(coap_id: int, data: bytes) -> str:
    """`AT+GTCOAPSEND=<id>,<len>,"<HEX>"`; raises DatagramTooLarge over 512 bytes."""
    if not data:
        # The modem takes 1 to 512 bytes; the shortest CoAP message is 4.
        raise InvalidRequest("an empty datagram cannot be sent")
    if len(data) > MAX_DATAGRAM:
        raise DatagramTooLarge(
            f"datagram of {len(data)} bytes is over the modem's {MAX_DATAGRAM}-byte limit"
        )
    return f'AT+GTCOAPSEND={coap_id},{len(data)},"{data.hex().upper()}"'


def format_open(host: str, port: int) -> str:
    """`AT+GTCOAPOPEN="<host>",<port>`, quoted like the L610's other socket commands."""
    if not host or len(host) > MAX_HOST_LENGTH:
        raise InvalidRequest(f"CoAP host must be 1 to {MAX_HOST_LENGTH} characters: {host!r}")
    if _HOST_FORBIDDEN.search(host):
        raise InvalidRequest(f"CoAP host holds a quote or line break: {host!r}")
    if not 1 <= port <= 65535:
        raise InvalidRequest(f"CoAP port must be 1-65535, got {port}")
    return f'AT+GTCOAPOPEN="{host}",{port}'


def format_close(coap_id: int) -> str:
    return f"AT+GTCOAPCLOSE={coap_id}"


def format_pdp_activate(apn: str) -> str:
    """`AT+MIPCALL=1,"<apn>"`, or `AT+MIPCALL=1` (the modem's default profile) for ""."""
    if not apn:
        return "AT+MIPCALL=1"
    if _HOST_FORBIDDEN.search(apn):
        raise InvalidRequest(f"APN holds a quote or line break: {apn!r}")
    return f'AT+MIPCALL=1,"{apn}"'


def parse_open(lines: Iterable[str]) -> int:
    """The new instance id from `+GTCOAPOPEN: <coap_id>`."""
    text = find_value(COAP_OPEN_PREFIX, lines, "AT+GTCOAPOPEN")
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise UnexpectedReply(f"AT+GTCOAPOPEN answered an unusable id {text!r}")
    return int(text)


def parse_free_ids(lines: Iterable[str]) -> list[int]:
    """Ids from `AT+GTCOAPOPEN?`: one line per free id, `+GTCOAPOPEN: 0` for none."""
    ids: list[int] = []
    for line in lines:
        if not line.startswith(COAP_OPEN_PREFIX):
            continue
        text = line[len(COAP_OPEN_PREFIX) :].strip()
        if not (text.isascii() and text.isdigit()):
            raise UnexpectedReply(f"AT+GTCOAPOPEN? answered {line!r}")
        if int(text) != 0:
            ids.append(int(text))
    return ids


def _looks_like_address(text: str) -> bool:
    return ("." in text or ":" in text) and not text.isdigit()


def parse_mipcall(line: str) -> PdpState:
    """Read `+MIPCALL:` leniently: firmware differs.

    Forms seen: `+MIPCALL: 0`, `+MIPCALL: 1,"10.0.0.2"`, `+MIPCALL: 1,10.0.0.2`, and the
    activation URC `+MIPCALL: 10.0.0.2` (address only). The state is the first field
    when it is a digit; the address is the first field that looks like one.
    """
    fields = [field.strip().strip('"') for field in value_after(MIPCALL_PREFIX, line).split(",")]
    ip = next((field for field in fields if _looks_like_address(field)), None)
    first = fields[0]
    if first.isascii() and first.isdigit():
        return PdpState(active=first != "0", ip=ip if first != "0" else None)
    if ip is not None:
        return PdpState(active=True, ip=ip)
    raise UnexpectedReply(f"unreadable PDP context state {line!r}")
