"""to_coap_message / response_to_json / error_to_json, and a round trip to a real server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import cbor2
import pytest
from aiocoap.numbers import OptionNumber

from bridge.config import Settings
from bridge.errors import (
    AtTimeout,
    Cancelled,
    CoapReset,
    CoapTimeout,
    ForbiddenTarget,
    ModemError,
)
from bridge.mapping import (
    MalformedRequest,
    ParsedRequest,
    error_to_json,
    parse_request,
    response_to_json,
    to_coap_message,
)
from tests.fixtures.coap_servers import LARGE_PAYLOAD, ROOT_TEXT, AiocoapServer

from .conftest import make_settings


def request(settings: Settings, **fields: Any) -> ParsedRequest:
    body = {"id": "r1", "uri": "coap://meters/v1/temp", **fields}
    parsed = parse_request(json.dumps(body).encode(), settings)
    assert isinstance(parsed, ParsedRequest)
    return parsed


def test_message_for_ip_target_has_no_uri_host(settings: Settings) -> None:
    message = to_coap_message(request(settings, uri="coap://meters/a/b?x=1&y=%20"))
    assert message.code == aiocoap.GET
    assert message.remote.hostinfo == "127.0.0.1:5683"
    assert message.opt.uri_host is None
    assert message.opt.uri_port is None
    assert list(message.opt.uri_path) == ["a", "b"]
    assert list(message.opt.uri_query) == ["x=1", "y= "]
    assert message.transport_tuning.reliability is True


def test_message_for_named_target_keeps_uri_host(settings: Settings) -> None:
    message = to_coap_message(request(settings, uri="coap://named/x", type="NON"))
    assert message.remote.hostinfo == "meters.example:5699"
    assert message.opt.uri_host == "meters.example"
    assert message.transport_tuning.reliability is False


def test_message_for_ipv6_target(settings: Settings) -> None:
    message = to_coap_message(request(settings, uri="coap://[::1]/x"))
    assert message.remote.hostinfo == "[::1]:5683"
    assert message.opt.uri_host is None


def test_message_fields_and_options(settings: Settings) -> None:
    message = to_coap_message(
        request(
            settings,
            method="FETCH",
            uri="coap://named/x",
            content_format="application/cbor",
            accept="application/json",
            payload={"k": 1},
            observe=True,
            options={"etag": ["hex:0102", "ab"], "uri_host": "virtual.example", "max_age": 9},
        )
    )
    assert message.code == aiocoap.FETCH
    assert (message.opt.content_format, message.opt.accept, message.opt.observe) == (60, 50, 0)
    assert list(message.opt.etags) == [b"\x01\x02", b"ab"]
    assert message.opt.uri_host == "virtual.example"
    assert len(message.opt.get_option(OptionNumber.URI_HOST)) == 1
    assert message.opt.max_age == 9
    assert cbor2.loads(message.payload) == {"k": 1}


def test_response_object() -> None:
    response = aiocoap.Message(
        code=aiocoap.CONTENT,
        payload=b'{"t": 21.5}',
        content_format=50,
        etag=b"\x3f\x00",
        max_age=60,
        location_path=["a", "b"],
        observe=12,
        size2=11,
    )
    answer = response_to_json("a1", response, 184.23, observe_seq=12)
    assert answer == {
        "id": "a1",
        "ok": True,
        "code": "2.05",
        "code_name": "Content",
        "content_format": "application/json",
        "options": {"etag": "hex:3f00", "location_path": ["a", "b"], "max_age": 60, "size2": 11},
        "payload": {"t": 21.5},
        "payload_encoding": "json",
        "observe": 12,
        "rtt_ms": 184.2,
    }
    json.dumps(answer, allow_nan=False)


def test_error_response_is_a_response_with_ok_false() -> None:
    response = aiocoap.Message(code=aiocoap.NOT_FOUND, payload=b"no such thing", content_format=0)
    answer = response_to_json("a1", response, 3.0)
    assert (answer["ok"], answer["code"], answer["code_name"]) == (False, "4.04", "Not Found")
    assert (answer["payload"], answer["payload_encoding"]) == ("no such thing", "text")
    assert answer["content_format"] == "text/plain; charset=utf-8"
    assert "observe" not in answer


def test_response_without_content_format_or_payload() -> None:
    answer = response_to_json("a1", aiocoap.Message(code=aiocoap.CHANGED), 1.0)
    assert answer["content_format"] is None
    assert answer["options"] == {}
    assert (answer["payload"], answer["payload_encoding"]) == ("", "text")


@pytest.mark.parametrize(
    ("code", "payload", "expected"),
    [
        (aiocoap.NOT_FOUND, b"Not Found", ("Not Found", "text")),
        (aiocoap.INTERNAL_SERVER_ERROR, b"stack\x00dump", ("stack\x00dump", "text")),
        (aiocoap.CONTENT, b"stack\x00dump", ("c3RhY2sAZHVtcA==", "base64")),
        (aiocoap.CONTENT, "Grüße\n".encode(), ("Grüße\n", "text")),
    ],
)
def test_payload_without_content_format_is_text_when_readable_or_diagnostic(
    code: aiocoap.Code, payload: bytes, expected: tuple[str, str]
) -> None:
    answer = response_to_json("a1", aiocoap.Message(code=code, payload=payload), 1.0)
    assert answer["content_format"] is None
    assert (answer["payload"], answer["payload_encoding"]) == expected


def test_unknown_options_and_codes_are_shown_raw() -> None:
    response = aiocoap.Message(code=aiocoap.Code(0x47), content_format=65001, payload=b"\x00")
    response.opt.add_option(OptionNumber(65004).create_option(decode=b"\xbe\xef"))
    answer = response_to_json("a1", response, 1.0)
    assert (answer["code"], answer["ok"], answer["content_format"]) == ("2.07", True, 65001)
    assert answer["options"] == {"option_65004": "hex:beef"}
    assert (answer["payload"], answer["payload_encoding"]) == ("AA==", "base64")


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (MalformedRequest("bad uri", request_id="a1"), "invalid_request", "bad uri"),
        (ForbiddenTarget("host x not allowed"), "forbidden_target", "host x not allowed"),
        (CoapTimeout("no response within 60 s"), "timeout", "no response within 60 s"),
        (CoapReset("RST"), "reset", "RST"),
        (AtTimeout("modem silent"), "modem_unavailable", "modem silent"),
        (Cancelled(), "cancelled", "cancelled"),
        (
            ModemError("AT+GTCOAPSEND=1,2", "+CME ERROR: 3", code=3, text="operation not allowed"),
            "modem_error",
            "modem answered 'AT+GTCOAPSEND=1,2' with '+CME ERROR: 3': operation not allowed",
        ),
        (RuntimeError("secret detail"), "internal", "internal error in the bridge; see its log"),
    ],
)
def test_error_objects(exc: BaseException, kind: str, message: str) -> None:
    assert error_to_json("a1", exc) == {
        "id": "a1",
        "ok": False,
        "error": {"kind": kind, "message": message},
    }


def test_error_object_for_unusable_request() -> None:
    assert error_to_json(None, MalformedRequest("x", request_id=None))["id"] is None


# --- a real CoAP server -----------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()


def server_settings(server: AiocoapServer) -> Settings:
    base = make_settings().model_dump()
    base["coap"]["servers"] = {"srv": {"host": server.host, "port": server.port}}
    return Settings.model_validate(base)


async def round_trip(client: Any, settings: Settings, **fields: Any) -> dict[str, Any]:
    message = to_coap_message(request(settings, **fields))
    response = await client.request(message).response
    return response_to_json("r1", response, 1.0)


async def test_round_trip_with_real_server(aiocoap_server: AiocoapServer, client: Any) -> None:
    settings = server_settings(aiocoap_server)
    root = await round_trip(client, settings, uri="coap://srv/")
    assert (root["code"], root["payload"]) == ("2.05", ROOT_TEXT.decode())

    echoed = await round_trip(
        client,
        settings,
        method="POST",
        uri=f"coap://{aiocoap_server.host}:{aiocoap_server.port}/echo",
        content_format="application/cbor",
        payload={"t": [1, 2.5, "x"]},
    )
    assert echoed["code"] == "2.04"
    # The echo resource sends no content format: the bytes come back as base64.
    assert echoed["payload_encoding"] == "base64"
    assert cbor2.loads(base64.b64decode(echoed["payload"])) == {"t": [1, 2.5, "x"]}

    large = await round_trip(client, settings, uri="coap://srv/large")
    assert large["payload_encoding"] == "base64"
    assert base64.b64decode(large["payload"]) == LARGE_PAYLOAD

    missing = await round_trip(client, settings, uri="coap://srv/nope")
    assert (missing["ok"], missing["code"]) == (False, "4.04")


def test_unsolicited_message_carries_remote_type_token_and_decoded_payload() -> None:
    from bridge.mapping import unsolicited_to_json

    message = aiocoap.Message(
        _mtype=aiocoap.NON,
        code=aiocoap.CONTENT,
        _mid=5,
        _token=b"\x01\xff",
        payload=b'{"a": 1}',
        content_format=50,
        observe=7,
    )

    body = unsolicited_to_json(message, "meters.example:5683")

    assert body["remote"] == "meters.example:5683"
    assert (body["type"], body["mid"], body["token"]) == ("NON", 5, "01ff")
    assert (body["code"], body["payload"], body["observe"]) == ("2.05", {"a": 1}, 7)
    assert "id" not in body
