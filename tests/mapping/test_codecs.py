"""Content-format codecs: names, families, request encoding, response decoding."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.mapping.codecs import (
    Family,
    PayloadEncoding,
    cbor_to_json,
    content_format_name,
    content_format_number,
    decode_payload,
    encode_payload,
    family,
)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (None, Family.OPAQUE),
        (0, Family.TEXT),
        (40, Family.TEXT),
        (42, Family.OPAQUE),
        (50, Family.JSON),
        (110, Family.JSON),  # senml+json
        (60, Family.CBOR),
        (112, Family.CBOR),  # senml+cbor
        (11050, Family.OPAQUE),  # deflated JSON is not JSON
        (20000, Family.TEXT),  # text/css
        (65001, Family.OPAQUE),
    ],
)
def test_families(number: int | None, expected: Family) -> None:
    assert family(number) is expected


def test_names_round_trip() -> None:
    for name in ("application/json", "application/cbor", "application/link-format"):
        assert content_format_name(content_format_number(name)) == name
    assert content_format_name(0) == "text/plain; charset=utf-8"
    assert content_format_name(11060) == "application/cbor; encoding=deflate"
    assert content_format_name(65001) == 65001


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values, st.sampled_from([50, 60, 112, None, 42]))
def test_json_values_round_trip_through_the_wire(value: Any, content_format: int | None) -> None:
    wire = encode_payload(value, PayloadEncoding.JSON, content_format)
    decoded, encoding = decode_payload(wire, 50 if content_format in (None, 42) else content_format)
    if wire:
        assert encoding is PayloadEncoding.JSON
        assert decoded == value


@given(st.binary(min_size=1))
def test_base64_and_hex_round_trip(raw: bytes) -> None:
    assert encode_payload(base64.b64encode(raw).decode(), PayloadEncoding.BASE64, None) == raw
    assert encode_payload(raw.hex(), PayloadEncoding.HEX, None) == raw
    decoded, encoding = decode_payload(raw, 42)
    assert (base64.b64decode(str(decoded)), encoding) == (raw, PayloadEncoding.BASE64)


@given(st.text(min_size=1))
def test_text_round_trip(text: str) -> None:
    try:
        wire = encode_payload(text, PayloadEncoding.TEXT, 0)
    except ValueError:
        assert any(0xD800 <= ord(char) <= 0xDFFF for char in text)
        return
    assert decode_payload(wire, 0) == (text, PayloadEncoding.TEXT)


@given(st.binary(max_size=200), st.sampled_from([None, 0, 40, 42, 50, 60, 112, 11050, 30000]))
def test_any_response_payload_decodes_to_strict_json(
    raw: bytes, content_format: int | None
) -> None:
    value, encoding = decode_payload(raw, content_format)
    json.dumps({"payload": value, "payload_encoding": encoding.value}, allow_nan=False)


@pytest.mark.parametrize(
    ("raw", "content_format", "expected"),
    [
        (b"", 50, ("", PayloadEncoding.TEXT)),
        (b'{"t": 21.5}', 50, ({"t": 21.5}, PayloadEncoding.JSON)),
        (b"{bad", 50, ("e2JhZA==", PayloadEncoding.BASE64)),
        (b"NaN", 50, ("TmFO", PayloadEncoding.BASE64)),
        (b"\xa1\x61t\xf9\x4d\x60", 60, ({"t": 21.5}, PayloadEncoding.JSON)),
        (b"\x01\x02", 60, ("AQI=", PayloadEncoding.BASE64)),  # trailing bytes
        (b"\xff", 60, ("/w==", PayloadEncoding.BASE64)),
        (b"</time>;obs", 40, ("</time>;obs", PayloadEncoding.TEXT)),
        ("héllo".encode(), 0, ("héllo", PayloadEncoding.TEXT)),
        (b"\xff\xfe", 0, ("//4=", PayloadEncoding.BASE64)),
        (b"hi", 42, ("aGk=", PayloadEncoding.BASE64)),
        # No content format: readable UTF-8 is text, anything else base64.
        (b"hi", None, ("hi", PayloadEncoding.TEXT)),
        ("line 1\tü\r\nline 2\n".encode(), None, ("line 1\tü\r\nline 2\n", PayloadEncoding.TEXT)),
        (b"\x00hi", None, ("AGhp", PayloadEncoding.BASE64)),
        (b"\x1b[31mred", None, ("G1szMW1yZWQ=", PayloadEncoding.BASE64)),
        (b"\x7f", None, ("fw==", PayloadEncoding.BASE64)),
        ("\x85".encode(), None, ("woU=", PayloadEncoding.BASE64)),  # C1 control (NEL)
        (b"\xa1\x61t\x01", None, ("oWF0AQ==", PayloadEncoding.BASE64)),  # CBOR, unlabelled
        (b"caf\xc3", None, ("Y2Fmww==", PayloadEncoding.BASE64)),  # truncated UTF-8
    ],
)
def test_response_decoding(
    raw: bytes, content_format: int | None, expected: tuple[object, PayloadEncoding]
) -> None:
    assert decode_payload(raw, content_format) == expected


@pytest.mark.parametrize(
    ("raw", "content_format", "expected"),
    [
        (b"Not Found", None, ("Not Found", PayloadEncoding.TEXT)),
        (b"bad\x00option\x1b", None, ("bad\x00option\x1b", PayloadEncoding.TEXT)),
        (b"\xff\xfe", None, ("//4=", PayloadEncoding.BASE64)),  # not UTF-8: nothing lost
        (b'{"why": 1}', 50, ({"why": 1}, PayloadEncoding.JSON)),  # its format still rules
        (b"\x00", 42, ("AA==", PayloadEncoding.BASE64)),
    ],
)
def test_diagnostic_payload_decoding(
    raw: bytes, content_format: int | None, expected: tuple[object, PayloadEncoding]
) -> None:
    assert decode_payload(raw, content_format, diagnostic=True) == expected


@given(st.binary(max_size=200), st.booleans())
def test_unlabelled_payloads_come_back_byte_for_byte(raw: bytes, diagnostic: bool) -> None:
    value, encoding = decode_payload(raw, None, diagnostic=diagnostic)
    assert isinstance(value, str)
    if encoding is PayloadEncoding.TEXT:
        assert value.encode("utf-8") == raw
    else:
        assert encoding is PayloadEncoding.BASE64
        assert base64.b64decode(value) == raw


@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]) | st.sampled_from("\t\r\n")))
def test_readable_text_without_content_format_is_text(text: str) -> None:
    assert decode_payload(text.encode("utf-8"), None) == (text, PayloadEncoding.TEXT)


def test_cbor_values_json_cannot_hold() -> None:
    item = cbor2.loads(
        cbor2.dumps(
            {
                1: b"\x00\xff",
                b"\x01": float("nan"),
                "inf": [float("inf"), float("-inf")],
                "tag": cbor2.CBORTag(4000, [1]),
                "undefined": cbor2.undefined,
                "simple": cbor2.CBORSimpleValue(99),
            }
        )
    )
    assert cbor_to_json(item) == {
        "1": "hex:00ff",
        "hex:01": "NaN",
        "inf": ["Infinity", "-Infinity"],
        "tag": {"tag": 4000, "value": [1]},
        "undefined": None,
        "simple": 99,
    }
    assert cbor_to_json(cbor2.loads(bytes.fromhex("c074323031332d30332d32315432303a30343a30305a")))
    assert cbor_to_json(math.pi) == math.pi


def test_deep_cbor_falls_back_to_base64() -> None:
    raw = b"\x81" * 100_000 + b"\x00"
    assert decode_payload(raw, 60)[1] is PayloadEncoding.BASE64


@pytest.mark.parametrize(
    ("value", "encoding", "message"),
    [
        (1, PayloadEncoding.BASE64, "must be a string"),
        ("a=b", PayloadEncoding.BASE64, "not valid base64"),
        ("a b", PayloadEncoding.HEX, "not valid hex"),
        ("0", PayloadEncoding.HEX, "not valid hex"),
        ("\ud800", PayloadEncoding.TEXT, "surrogates"),
    ],
)
def test_request_encoding_errors(value: Any, encoding: PayloadEncoding, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_payload(value, encoding, None)


def test_cbor_encoding_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="surrogates"):
        encode_payload({"x": "\ud800"}, PayloadEncoding.JSON, 60)
