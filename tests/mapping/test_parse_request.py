"""parse_request: every field of the request object, every refusal."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.errors import ForbiddenTarget, InvalidRequest
from bridge.mapping import (
    REQUEST_FIELDS,
    CancelRequest,
    CoapOption,
    MalformedRequest,
    ParsedRequest,
    RequestRejected,
    TargetNotAllowed,
    max_request_bytes,
    parse_request,
)

from .conftest import BASE, make_settings

# The cases, by name: tests/mapping/test_schema.py holds the request schema to them too.
BAD_URIS: list[Any] = [
    ("coaps://meters/x", "coaps:// is not supported"),
    ("http://meters/x", "scheme must be coap://"),
    ("meters/x", "scheme must be coap://"),
    ("coap://user@meters/x", "user information"),
    ("coap://meters/x#frag", "fragment"),
    ("coap://meters/x#", "fragment"),
    ("coap://10.0.0.5:70000/x", "port must be a number"),
    ("coap://10.0.0.5:0/x", "port must be a number"),
    ("coap://10.0.0.5:abc/x", "port must be a number"),
    ("coap:///x", "no host"),
    ("coap://meters/a%zz", "bad percent-encoding"),
    ("coap://meters/a%4", "bad percent-encoding"),
    ("coap://meters/a?b=%ff", "not UTF-8"),
    ("coap://meters/a\tb", "control characters"),
    ("coap://meters/a b", "spaces"),
    ("coap://meters:5684/x", "server alias (port 5683)"),
    ("coap://bad_host!/x", "is not a host name"),
    ("coap://me%74ers/x", "percent-encoded"),
    ("coap://[::1/x", "malformed"),
    ("coap://meters/" + "a" * 256, "longer than 255 bytes"),
    (5, "uri must be a non-empty string"),
    ("", "uri must be a non-empty string"),
]

UNUSABLE_REQUESTS: list[Any] = [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"id": NaN}', "not valid JSON"),
    (b'{"id": "a", "id": "b", "uri": "coap://meters/"}', "duplicate field"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"x"', "must be a JSON object"),
    (b'{"uri": "coap://meters/"}', "missing field id"),
    (b'{"id": 5, "uri": "coap://meters/"}', "id must be a string"),
    (b'{"id": "", "uri": "coap://meters/"}', "1-64 characters"),
    (json.dumps({"id": "x" * 65, "uri": "coap://meters/"}).encode(), "1-64 characters"),
    (b'{"id": "a+b", "uri": "coap://meters/"}', "must not contain '+'"),
    (b'{"id": "a#", "uri": "coap://meters/"}', "must not contain '+'"),
    (b'{"id": "a\\u0000", "uri": "coap://meters/"}', "control characters"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
]

INVALID_FIELDS: list[Any] = [
    ({"method": "BREW"}, "method must be one of GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH"),
    ({"method": 1}, "method must be one of"),
    ({"type": "ACK"}, "type must be one of CON, NON"),
    ({"content_format": "application/x-nope"}, "unknown content format"),
    ({"content_format": 70000}, "outside 0-65535"),
    ({"accept": True}, "not a boolean"),
    ({"accept": [50]}, "accept: must be a media type name or a number"),
    ({"observe": "yes"}, "observe must be true or false"),
    ({"observe": True, "method": "POST"}, "observe needs method GET or FETCH"),
    ({"observe": True, "options": {"observe": 1}}, "options.observe is 0 (register"),
    ({"options": {"observe": 2}}, "options.observe is 0 (register"),
    ({"timeout": 0}, "greater than 0"),
    ({"timeout": -1}, "greater than 0"),
    ({"timeout": "5"}, "greater than 0"),
    ({"timeout": True}, "greater than 0"),
    ({"options": []}, "options must be an object"),
    ({"options": {"colour": 1, "uri_path": "x"}}, "unknown options colour, uri_path"),
    ({"options": {"etag": 5}}, "options.etag must be a string or 'hex:...'"),
    ({"options": {"etag": ""}}, "options.etag must be 1-8 bytes long, not 0"),
    ({"options": {"etag": "hex:0"}}, "options.etag is not valid hex"),
    ({"options": {"etag": "hex:zz"}}, "options.etag is not valid hex"),
    ({"options": {"max_age": -1}}, "non-negative integer"),
    ({"options": {"max_age": 2**32}}, "0-4 bytes long"),
    ({"options": {"max_age": [1, 2]}}, "takes one value"),
    ({"options": {"max_age": "60"}}, "non-negative integer"),
    ({"options": {"if_none_match": 1}}, "true or false"),
    ({"payload": 5, "payload_encoding": "text"}, "must be a string"),
    ({"payload": "x", "payload_encoding": "utf8"}, "payload_encoding must be json, text"),
    ({"payload": "***", "payload_encoding": "base64"}, "not valid base64"),
    ({"payload": "abc", "payload_encoding": "hex"}, "not valid hex"),
    ({"payload": "\ud800"}, "surrogates not allowed"),
    ({"payload": "x" * 1025}, "payload is 1025 bytes, more than coap.max_request_payload"),
    ({"payload": "ff" * 1025, "payload_encoding": "hex"}, "more than coap.max_request_payload"),
    ({"response_topic": "elsewhere/t"}, f"under {BASE}/response/"),
    ({"response_topic": f"{BASE}/response/"}, f"under {BASE}/response/"),
    ({"response_topic": f"{BASE}/response/+"}, "without '+', '#' or NUL"),
    ({"response_topic": f"{BASE}/response/a/#"}, "without"),
    ({"response_topic": f"{BASE}/response/\u0000"}, "without"),
    ({"response_topic": 7}, "response_topic must be"),
    ({"uri": None}, "uri must be a non-empty string"),
    ({"cancel": "true"}, "cancel must be true or false"),
    ({"cancel": True, "method": "GET"}, "a cancel request takes only id"),
]

PAYLOAD_ENCODINGS: list[Any] = [
    ({"payload": {"t": 21.5}}, b'{"t":21.5}'),
    ({"payload": [1, "é"], "content_format": 50}, '[1,"é"]'.encode()),
    ({"payload": {"t": 21.5}, "content_format": "application/cbor"}, None),
    ({"payload": {"b": 1, "a": 1.5}, "content_format": 112}, None),  # senml+cbor
    ({"payload": "héllo"}, "héllo".encode()),
    ({"payload": "héllo", "payload_encoding": "json"}, '"héllo"'.encode()),
    ({"payload": "3q2+7w==", "payload_encoding": "base64"}, b"\xde\xad\xbe\xef"),
    ({"payload": "DEADbeef", "payload_encoding": "hex"}, b"\xde\xad\xbe\xef"),
    ({"payload": None}, b""),
    ({"payload_encoding": "hex"}, b""),
    ({"payload": 0}, b"0"),
    ({"payload": False}, b"false"),
]

URI_TARGETS: list[Any] = [
    ("coap://meters/x", "127.0.0.1", 5683),
    ("coap://METERS:5683/x", "127.0.0.1", 5683),
    ("coap://named/x", "meters.example", 5699),
    ("coap://meters.example/x", "meters.example", 5683),
    ("coap://Meters.Example:1234/x", "meters.example", 1234),
    ("coap://127.0.0.1:9/x", "127.0.0.1", 9),
    ("coap://10.0.0.5/x", "10.0.0.5", 5683),
    ("coap://[::1]:5700/x", "::1", 5700),
    ("COAP://meters/x", "127.0.0.1", 5683),
]

FORBIDDEN_URIS = ["coap://evil.example/x", "coap://10.0.0.6/x", "coap://[::2]/"]


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def parse(settings: Settings, **fields: Any) -> ParsedRequest:
    body = {"id": "r1", "uri": "coap://meters/v1/temp", **fields}
    request = parse_request(encode(body), settings)
    assert isinstance(request, ParsedRequest)
    return request


def rejected(settings: Settings, payload: bytes | dict[str, Any]) -> RequestRejected:
    raw = payload if isinstance(payload, bytes) else encode(payload)
    with pytest.raises(RequestRejected) as caught:
        parse_request(raw, settings)
    return caught.value


def invalid(settings: Settings, **fields: Any) -> MalformedRequest:
    error = rejected(settings, {"id": "r1", "uri": "coap://meters/x", **fields})
    assert isinstance(error, MalformedRequest)
    assert isinstance(error, InvalidRequest)
    assert error.kind == "invalid_request"
    assert error.request_id == "r1"
    return error


def test_minimal_request_defaults(settings: Settings) -> None:
    request = parse(settings)
    assert request == ParsedRequest(
        id="r1",
        method="GET",
        uri="coap://meters/v1/temp",
        host="127.0.0.1",
        port=5683,
        path=("v1", "temp"),
        query=(),
        confirmable=True,
        content_format=None,
        accept=None,
        options=(),
        payload=b"",
        observe=False,
        timeout=30.0,
        response_topic=None,
    )
    assert request.target == "127.0.0.1:5683"


def test_full_request(settings: Settings) -> None:
    request = parse(
        settings,
        method="iPATCH",
        uri="coap://meters.example:5683/v1/a%2Fb/?unit=C&x=%C3%A9&",
        type="NON",
        content_format="application/json",
        accept=60,
        options={"if_match": ["hex:0a1b", "v1"], "max_age": 60, "if_none_match": True},
        payload={"t": 21.5},
        timeout=5,
        response_topic=f"{BASE}/response/app-7",
    )
    assert (request.method, request.host, request.port) == ("iPATCH", "meters.example", 5683)
    assert request.path == ("v1", "a/b", "")
    assert request.query == ("unit=C", "x=é", "")
    assert not request.confirmable
    assert (request.content_format, request.accept) == (50, 60)
    assert request.options == (
        CoapOption(1, b"\x0a\x1b"),
        CoapOption(1, b"v1"),
        CoapOption(14, b"\x3c"),
        CoapOption(5, b""),
    )
    assert request.payload == b'{"t":21.5}'
    assert request.timeout == 5.0
    assert request.response_topic == f"{BASE}/response/app-7"


@pytest.mark.parametrize(("uri", "host", "port"), URI_TARGETS)
def test_uri_targets(settings: Settings, uri: str, host: str, port: int) -> None:
    request = parse(settings, uri=uri)
    assert (request.host, request.port, request.path) == (host, port, ("x",))


@pytest.mark.parametrize(("uri", "message"), BAD_URIS)
def test_bad_uris(settings: Settings, uri: object, message: str) -> None:
    error = invalid(settings, uri=uri)
    assert message in str(error)


@pytest.mark.parametrize("uri", FORBIDDEN_URIS)
def test_forbidden_targets(settings: Settings, uri: str) -> None:
    error = rejected(settings, {"id": "r1", "uri": uri, "response_topic": f"{BASE}/response/z"})
    assert isinstance(error, TargetNotAllowed)
    assert isinstance(error, ForbiddenTarget)
    assert error.kind == "forbidden_target"
    assert (error.request_id, error.response_topic) == ("r1", f"{BASE}/response/z")
    assert "coap.allow_hosts" in str(error)


def test_server_host_any_port_is_allowed(settings: Settings) -> None:
    assert parse(settings, uri="coap://127.0.0.1:7777/").path == ()


@pytest.mark.parametrize(("payload", "message"), UNUSABLE_REQUESTS)
def test_unusable_requests_have_no_id(settings: Settings, payload: bytes, message: str) -> None:
    error = rejected(settings, payload)
    assert isinstance(error, MalformedRequest)
    assert error.request_id is None
    assert error.response_topic is None
    assert message in str(error)


def test_oversized_mqtt_payload_refused_before_parsing(settings: Settings) -> None:
    limit = max_request_bytes(settings)
    assert limit == 2 * 1024 + 64 * 1024
    error = rejected(settings, b"{" * (limit + 1))
    assert error.request_id is None
    assert f"more than the {limit} bytes" in str(error)


def test_unknown_fields_are_named(settings: Settings) -> None:
    assert "unknown fields: colour, size" in str(invalid(settings, size=1, colour="red"))


@pytest.mark.parametrize(("fields", "message"), INVALID_FIELDS)
def test_invalid_fields(settings: Settings, fields: dict[str, Any], message: str) -> None:
    error = invalid(settings, **fields)
    assert message in str(error)


def test_missing_uri(settings: Settings) -> None:
    error = rejected(settings, {"id": "r1"})
    assert "missing field uri" in str(error)


def test_error_after_response_topic_carries_it(settings: Settings) -> None:
    topic = f"{BASE}/response/app"
    error = invalid(settings, response_topic=topic, method="BREW")
    assert error.response_topic == topic


def test_bad_response_topic_error_has_no_topic(settings: Settings) -> None:
    assert invalid(settings, response_topic="x/y").response_topic is None


@pytest.mark.parametrize(("fields", "wire"), PAYLOAD_ENCODINGS)
def test_payload_encodings(settings: Settings, fields: dict[str, Any], wire: bytes | None) -> None:
    request = parse(settings, method="POST", **fields)
    if wire is None:
        assert cbor2.loads(request.payload) == fields["payload"]
        assert len(request.payload) < len(json.dumps(fields["payload"]))
    else:
        assert request.payload == wire


def test_payload_at_the_limit_is_accepted(settings: Settings) -> None:
    assert len(parse(settings, payload="x" * 1024).payload) == 1024


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("application/json", 50),
        ("application/cbor", 60),
        ("text/plain", 0),
        ("text/plain;charset=utf-8", 0),
        ("text/plain; charset=utf-8", 0),
        ("application/link-format", 40),
        ("application/octet-stream", 42),
        ("Application/JSON", 50),
        ("60", 60),
        (65000, 65000),
    ],
)
def test_content_format_names(settings: Settings, name: str | int, number: int) -> None:
    assert parse(settings, content_format=name, accept=name).content_format == number


def test_timeout_is_capped_by_config(settings: Settings) -> None:
    assert parse(settings, timeout=3600).timeout == 60.0
    assert parse(settings, timeout=0.5).timeout == 0.5
    assert parse(settings, timeout=10**400).timeout == 60.0
    huge = parse_request(b'{"id": "r1", "uri": "coap://meters/", "timeout": 1e400}', settings)
    assert isinstance(huge, ParsedRequest)
    assert huge.timeout == 60.0


def test_method_names_are_case_insensitive(settings: Settings) -> None:
    assert parse(settings, method="ipatch").method == "iPATCH"
    assert parse(settings, method="fetch", observe=True).observe


def test_option_values(settings: Settings) -> None:
    request = parse(
        settings,
        options={
            "etag": [],
            "uri_host": "virtual.example",
            "observe": 1,
            "size2": 0,
            "request_tag": ["hex:"],
            "if_none_match": False,
        },
    )
    assert request.options == (
        CoapOption(3, b"virtual.example"),
        CoapOption(6, b"\x01"),
        CoapOption(28, b""),
        CoapOption(292, b""),
    )


def test_cancel_request(settings: Settings) -> None:
    topic = f"{BASE}/response/x"
    cancel = parse_request(encode({"id": "r1", "cancel": True, "response_topic": topic}), settings)
    assert cancel == CancelRequest("r1", topic)
    plain = parse_request(encode({"id": "r1", "cancel": False, "uri": "coap://meters/"}), settings)
    assert isinstance(plain, ParsedRequest)


# --- properties ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from([*sorted(REQUEST_FIELDS), "other"])
plausible_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "r1",
            "GET",
            "iPATCH",
            "NON",
            "coap://meters/x",
            "coap://evil/",
            "coaps://meters/",
            "coap://[::1]:99999/",
            "application/cbor",
            "hex",
            "base64",
            "hex:0a",
            f"{BASE}/response/a",
            {"etag": ["hex:00"], "max_age": 5},
            {"observe": "hex:zz"},
        ]
    ),
)
requests = st.dictionaries(field_names, plausible_values, max_size=8)
MODULE_SETTINGS = make_settings()


def _check(raw: bytes) -> None:
    try:
        result = parse_request(raw, MODULE_SETTINGS)
    except RequestRejected as exc:
        # The only errors: invalid_request or forbidden_target, each with an answer.
        kind = exc.kind
    else:
        assert isinstance(result, ParsedRequest | CancelRequest)
        return
    assert kind in ("invalid_request", "forbidden_target")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    _check(raw)


@given(json_values)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    _check(json.dumps(value).encode())


@hypothesis_settings(max_examples=300)
@given(requests)
def test_request_shaped_json_never_crashes(body: dict[str, Any]) -> None:
    _check(json.dumps(body).encode())


@given(st.text(max_size=60))
def test_arbitrary_uris_never_crash(uri: str) -> None:
    _check(json.dumps({"id": "r1", "uri": uri}).encode())
