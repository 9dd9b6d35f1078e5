"""CBOR both ways: a string sent as CBOR is CBOR on the wire; no map entry is dropped."""

from __future__ import annotations

import json

import cbor2

from bridge.config import Settings
from bridge.mapping import ParsedRequest, parse_request
from bridge.mapping.codecs import PayloadEncoding, decode_payload

CBOR = 60


def request_payload(settings: Settings, **fields: object) -> bytes:
    body = {"id": "c1", "uri": "coap://meters/x", "method": "PUT", **fields}
    request = parse_request(json.dumps(body).encode(), settings)
    assert isinstance(request, ParsedRequest)
    return request.payload


def test_string_payload_for_cbor_without_encoding_goes_out_as_cbor(settings: Settings) -> None:
    wire = request_payload(settings, content_format="application/cbor", payload="hello")

    assert wire == cbor2.dumps("hello")
    assert cbor2.loads(wire) == "hello"


def test_string_payload_with_text_encoding_stays_raw_as_asked(settings: Settings) -> None:
    wire = request_payload(settings, content_format=CBOR, payload="hello", payload_encoding="text")
    assert wire == b"hello"


def test_string_payload_without_content_format_is_still_text(settings: Settings) -> None:
    assert request_payload(settings, payload="hello") == b"hello"


def test_cbor_map_keys_that_would_merge_are_kept_as_pairs() -> None:
    payload = cbor2.dumps({1: "int", "1": "text", b"\x01": "bytes"})

    decoded, encoding = decode_payload(payload, CBOR)

    assert encoding is PayloadEncoding.JSON
    assert decoded == [[1, "int"], ["1", "text"], ["hex:01", "bytes"]]


def test_cbor_maps_without_colliding_keys_stay_objects() -> None:
    payload = cbor2.dumps({1: "a", "b": {2: "c"}})
    assert decode_payload(payload, CBOR) == ({"1": "a", "b": {"2": "c"}}, PayloadEncoding.JSON)
