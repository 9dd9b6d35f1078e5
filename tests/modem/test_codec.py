"""The sans-IO L610 codec: command formatting and reply/URC parsing, no I/O."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bridge.errors import DatagramTooLarge, InvalidRequest, MalformedUrc, UnexpectedReply
from bridge.modem.driver import Datagram
from bridge.modem.l610.codec import (
    PdpState,
    format_close,
    format_open,
    format_pdp_activate,
    format_send,
    parse_coap_data,
    parse_free_ids,
    parse_mipcall,
    parse_open,
)
from bridge.modem.ts27007 import (
    parse_cpin,
    parse_csq,
    parse_identity,
    parse_registration,
    rssi_to_dbm,
)

_SEND = re.compile(r'AT\+GTCOAPSEND=(\d+),(\d+),"([0-9A-F]*)"')

# docs/l610-coap-at.md: `<data_len>` is "at most 512" bytes, in AT+GTCOAPSEND and in
# +GTCOAPDATA alike (the spec's figure, not the code's constant).
MAX_DATAGRAM = 512

coap_ids = st.integers(min_value=1, max_value=99)
datagrams = st.binary(min_size=1, max_size=MAX_DATAGRAM)


def _as_urc(command: str) -> str:
    """What the modem reports when the peer echoes a datagram sent with `command`."""
    match = _SEND.fullmatch(command)
    assert match is not None, command
    coap_id, data_len, hex_text = match.groups()
    return f"+GTCOAPDATA: {coap_id},{data_len},{hex_text}"


@given(coap_id=coap_ids, data=datagrams)
def test_send_then_receive_round_trip(coap_id: int, data: bytes) -> None:
    command = format_send(coap_id, data)
    assert command == f'AT+GTCOAPSEND={coap_id},{len(data)},"{data.hex().upper()}"'
    assert parse_coap_data(_as_urc(command)) == Datagram(coap_id, data)


@given(coap_id=coap_ids, data=datagrams, lower=st.booleans(), quoted=st.booleans())
def test_receive_accepts_either_case_and_quoted_hex(
    coap_id: int, data: bytes, lower: bool, quoted: bool
) -> None:
    hex_text = data.hex() if lower else data.hex().upper()
    if quoted:
        hex_text = f'"{hex_text}"'
    line = f"+GTCOAPDATA: {coap_id},{len(data)},{hex_text}"
    assert parse_coap_data(line) == Datagram(coap_id, data)


def test_empty_datagrams_exist_in_neither_direction() -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        format_send(1, b"")
    with pytest.raises(MalformedUrc, match="data_len 0"):
        parse_coap_data("+GTCOAPDATA: 1,0,")


@given(data=st.binary(min_size=MAX_DATAGRAM + 1, max_size=MAX_DATAGRAM + 64))
def test_send_over_512_bytes_is_refused(data: bytes) -> None:
    with pytest.raises(DatagramTooLarge, match="512"):
        format_send(1, data)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("+GTCOAPDATA: 1,2,ABC", "odd-length"),
        ("+GTCOAPDATA: 1,3,ABCD", "data_len 3 but 2 bytes"),
        ("+GTCOAPDATA: 1,1,ABCD", "data_len 1 but 2 bytes"),
        ("+GTCOAPDATA: 1,2,ABZZ", "non-hex"),
        ("+GTCOAPDATA: 1,2,AB D", "non-hex"),
        ("+GTCOAPDATA: 1,2, ABCD ", None),
        ("+GTCOAPDATA: 1,513," + "00" * 513, "over 512"),
        ("+GTCOAPDATA: 1,2", "expected 3 fields"),
        ("+GTCOAPDATA: 1,2,AB,CD", "expected 3 fields"),
        ("+GTCOAPDATA: x,2,ABCD", "coap_id"),
        ("+GTCOAPDATA: -1,2,ABCD", "coap_id"),
        ("+GTCOAPDATA: 0,2,ABCD", "coap_id 0"),
        ("+GTCOAPDATA: 1,,ABCD", "data_len"),
        ("+GTCOAPDATA: 1,\u00b2,ABCD", "data_len"),
        ("+GTCOAPDATA: \u0661,2,ABCD", "coap_id"),
        ('+GTCOAPDATA: 1,2,"ABCD', "odd-length"),
        ("+GTCOAPOPEN: 1", "not a +GTCOAPDATA"),
    ],
)
def test_malformed_data_lines_are_rejected(line: str, reason: str | None) -> None:
    if reason is None:
        # Spaces around the hex are tolerated: only the digits count.
        assert parse_coap_data(line) == Datagram(1, b"\xab\xcd")
        return
    with pytest.raises(MalformedUrc, match=re.escape(reason)) as caught:
        parse_coap_data(line)
    assert caught.value.line == line


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_malformed_urc_only(tail: str) -> None:
    for line in (tail, f"+GTCOAPDATA:{tail}", f"+GTCOAPDATA: 1,{tail}"):
        try:
            datagram = parse_coap_data(line)
        except MalformedUrc:
            continue
        assert datagram.coap_id >= 1
        assert len(datagram.data) <= MAX_DATAGRAM


@given(
    coap_id=coap_ids,
    data=st.binary(min_size=1, max_size=MAX_DATAGRAM),
    delta=st.integers(min_value=-600, max_value=600).filter(lambda d: d != 0),
)
def test_data_len_mismatch_is_always_rejected(coap_id: int, data: bytes, delta: int) -> None:
    claimed = len(data) + delta
    assume(claimed >= 0)
    with pytest.raises(MalformedUrc):
        parse_coap_data(f"+GTCOAPDATA: {coap_id},{claimed},{data.hex()}")


@given(
    coap_id=coap_ids,
    data=st.binary(min_size=1, max_size=MAX_DATAGRAM),
    position=st.integers(min_value=0),
    bad=st.characters(exclude_characters="0123456789abcdefABCDEF,"),
)
def test_any_non_hex_character_is_rejected(
    coap_id: int, data: bytes, position: int, bad: str
) -> None:
    hex_text = data.hex()
    index = position % len(hex_text)
    corrupted = hex_text[:index] + bad + hex_text[index + 1 :]
    with pytest.raises(MalformedUrc):
        parse_coap_data(f"+GTCOAPDATA: {coap_id},{len(data)},{corrupted}")


def test_open_and_close_commands() -> None:
    assert format_open("10.0.0.1", 5683) == 'AT+GTCOAPOPEN="10.0.0.1",5683'
    assert format_open("coap.example.org", 1) == 'AT+GTCOAPOPEN="coap.example.org",1'
    assert format_close(3) == "AT+GTCOAPCLOSE=3"


@pytest.mark.parametrize(
    ("host", "port"),
    [("", 5683), ("a" * 256, 5683), ('evil",1\r\nAT+CFUN=0', 5683), ("h", 0), ("h", 65536)],
)
def test_open_rejects_what_would_break_the_command(host: str, port: int) -> None:
    with pytest.raises(InvalidRequest):
        format_open(host, port)


def test_pdp_activation_command() -> None:
    assert format_pdp_activate("") == "AT+MIPCALL=1"
    assert format_pdp_activate("iot.example") == 'AT+MIPCALL=1,"iot.example"'
    with pytest.raises(InvalidRequest):
        format_pdp_activate('a"b')


def test_open_reply() -> None:
    assert parse_open(["+GTCOAPOPEN: 2"]) == 2
    with pytest.raises(UnexpectedReply):
        parse_open([])
    with pytest.raises(UnexpectedReply):
        parse_open(["+GTCOAPOPEN: 0"])


def test_free_ids() -> None:
    assert parse_free_ids(["+GTCOAPOPEN: 1", "+GTCOAPOPEN: 3"]) == [1, 3]
    assert parse_free_ids(["+GTCOAPOPEN: 0"]) == []
    with pytest.raises(UnexpectedReply):
        parse_free_ids(["+GTCOAPOPEN: x"])


@pytest.mark.parametrize(
    ("rssi", "dbm"), [(0, -113), (1, -111), (21, -71), (31, -51), (99, None), (50, None)]
)
def test_rssi_to_dbm(rssi: int, dbm: int | None) -> None:
    assert rssi_to_dbm(rssi) == dbm
    assert parse_csq([f"+CSQ: {rssi},99"]) == dbm


def test_csq_unreadable() -> None:
    with pytest.raises(UnexpectedReply):
        parse_csq(["+CSQ: ,99"])


@pytest.mark.parametrize(
    ("line", "stat"),
    [("+CEREG: 0,1", 1), ('+CEREG: 2,5,"1A2B","01C2D3E4",7', 5), ("+CEREG: 2", 2)],
)
def test_registration(line: str, stat: int) -> None:
    assert parse_registration([line], "+CEREG:") == stat


def test_registration_unreadable() -> None:
    with pytest.raises(UnexpectedReply):
        parse_registration(["+CGREG: 0,x"], "+CGREG:")
    with pytest.raises(UnexpectedReply):
        parse_registration(["+CEREG: 0,1"], "+CGREG:")


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("+MIPCALL: 0", PdpState(False, None)),
        ('+MIPCALL: 1,"10.1.2.3"', PdpState(True, "10.1.2.3")),
        ("+MIPCALL: 1,10.1.2.3", PdpState(True, "10.1.2.3")),
        ("+MIPCALL: 1", PdpState(True, None)),
        ("+MIPCALL: 10.1.2.3", PdpState(True, "10.1.2.3")),
        ('+MIPCALL: "2001:db8::1"', PdpState(True, "2001:db8::1")),
        ('+MIPCALL: 1,1,"10.9.8.7"', PdpState(True, "10.9.8.7")),
    ],
)
def test_mipcall_is_read_leniently(line: str, state: PdpState) -> None:
    assert parse_mipcall(line) == state


def test_mipcall_unreadable() -> None:
    with pytest.raises(UnexpectedReply):
        parse_mipcall("+MIPCALL: up")


def test_identity_and_sim() -> None:
    assert parse_identity(["L610"], "+CGMM:") == "L610"
    assert parse_identity(['+CGSN: "867123456789012"'], "+CGSN:") == "867123456789012"
    assert parse_identity([], "+CGMR:") == ""
    assert parse_cpin(["+CPIN: READY"]) == "READY"
    assert parse_cpin(["+CPIN: SIM PIN"]) == "SIM PIN"
