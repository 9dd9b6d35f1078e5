"""The request JSON Schema (bridge/mapping/request.schema.json) against parse_request.

Every bad request of the suite is refused by both; every good one in canonical spelling
is taken by both; and what the schema takes, the parser never calls invalid_request.
Which hosts may be addressed is policy (forbidden_target), not shape: the schema takes
any well-formed coap:// URI.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from aiocoap.numbers import contentformat
from hypothesis import given
from hypothesis import settings as hypothesis_settings

from bridge.config import Settings
from bridge.mapping import MalformedRequest, RequestRejected, TargetNotAllowed, parse_request
from bridge.mapping.schema import generic_request_schema, request_schema
from tests.fixtures.contract import CONTRACT, read_i_json
from tests.reliability import test_bad_input as e2e_cases

from . import test_parse_request as cases
from .conftest import BASE, make_settings

SETTINGS = make_settings()
E2E_SETTINGS = Settings.model_validate(
    {
        "gateway_id": "e2e",
        "modem": {"port": "/dev/null"},
        "mqtt": {"base_topic": e2e_cases.BASE},
        "coap": {"servers": {"lab": {"host": "127.0.0.1", "port": 5683}}},
    }
)


def schema_problems(payload: bytes, settings: Settings) -> list[str]:
    """Why the schema (for `settings`) refuses `payload`; [] when it takes it."""
    try:
        body = read_i_json(payload)
    except (ValueError, RecursionError) as exc:
        return [f"not I-JSON: {exc}"]
    validator = jsonschema.Draft7Validator(request_schema(settings))
    return [error.message for error in validator.iter_errors(body)]


def parser_refuses(payload: bytes, settings: Settings) -> bool:
    try:
        parse_request(payload, settings)
    except MalformedRequest:
        return True
    return False


def assert_both_refuse(payload: bytes, settings: Settings = SETTINGS) -> None:
    assert parser_refuses(payload, settings), f"parse_request takes {payload!r:.200}"
    assert schema_problems(payload, settings), f"the schema takes {payload!r:.200}"


def assert_both_take(body: dict[str, Any], settings: Settings = SETTINGS) -> None:
    payload = json.dumps(body).encode()
    parse_request(payload, settings)
    assert schema_problems(payload, settings) == [], body


def with_uri(**fields: Any) -> bytes:
    return json.dumps({"id": "r1", "uri": "coap://meters/x", **fields}).encode()


def test_the_schemas_are_valid_draft_7() -> None:
    jsonschema.Draft7Validator.check_schema(generic_request_schema())
    jsonschema.Draft7Validator.check_schema(request_schema(SETTINGS))


def test_the_document_names_the_packaged_schema() -> None:
    payload = CONTRACT.registry.resolver(CONTRACT.uri).lookup(
        "#/components/messages/request/payload"
    )
    assert payload.resolver.lookup(payload.contents["$ref"]).contents == generic_request_schema()


def test_content_format_names_are_the_registry() -> None:
    registered = {
        media_type
        for media_type, encoding in contentformat.ContentFormat._by_mt_encoding
        if encoding == "identity"
    }
    names = set(generic_request_schema()["properties"]["content_format"]["anyOf"][2]["enum"])
    assert names == registered | {"text/plain", "text/plain; charset=utf-8"}


@pytest.mark.parametrize(("uri", "message"), cases.BAD_URIS)
def test_bad_uris(uri: object, message: str) -> None:
    assert_both_refuse(with_uri(uri=uri))


@pytest.mark.parametrize(("payload", "message"), cases.UNUSABLE_REQUESTS)
def test_unusable_requests(payload: bytes, message: str) -> None:
    assert_both_refuse(payload)


@pytest.mark.parametrize(("fields", "message"), cases.INVALID_FIELDS)
def test_invalid_fields(fields: dict[str, Any], message: str) -> None:
    assert_both_refuse(with_uri(**fields))


def test_missing_uri_and_unknown_fields() -> None:
    assert_both_refuse(b'{"id": "r1"}')
    assert_both_refuse(with_uri(colour="red"))


@pytest.mark.parametrize(("field", "value"), e2e_cases.WRONG_TYPES)
def test_e2e_wrong_types(field: str, value: Any) -> None:
    body = {"id": "t", "uri": "coap://lab/hello", field: value}
    assert_both_refuse(json.dumps(body).encode(), E2E_SETTINGS)


@pytest.mark.parametrize("uri", e2e_cases.BAD_URIS)
def test_e2e_bad_uris(uri: str) -> None:
    assert_both_refuse(json.dumps({"id": "u", "uri": uri}).encode(), E2E_SETTINGS)


@pytest.mark.parametrize("topic", e2e_cases.BAD_RESPONSE_TOPICS)
def test_e2e_bad_response_topics(topic: str) -> None:
    body = {"id": "rt", "uri": "coap://lab/hello", "response_topic": topic}
    assert_both_refuse(json.dumps(body).encode(), E2E_SETTINGS)


def test_e2e_other_bad_requests() -> None:
    hello = "coap://lab/hello"
    for body in (
        {"id": "big", "uri": hello, "payload": "x" * (1 << 20)},
        {"id": 5, "uri": hello},
        {"id": ["x"], "uri": hello},
        {"id": "brew", "method": "BREW", "uri": hello},
    ):
        assert_both_refuse(json.dumps(body).encode(), E2E_SETTINGS)
    assert_both_refuse(b"[" * 100_000 + b"]" * 100_000, E2E_SETTINGS)
    deep = '{"id": "deep", "uri": "coap://lab/hello", "payload": ' + "[" * 5000 + "]" * 5000 + "}"
    assert_both_refuse(deep.encode(), E2E_SETTINGS)


@pytest.mark.parametrize(("uri", "host", "port"), cases.URI_TARGETS)
def test_good_uris(uri: str, host: str, port: int) -> None:
    assert_both_take({"id": "r1", "uri": uri})


@pytest.mark.parametrize(("fields", "wire"), cases.PAYLOAD_ENCODINGS)
def test_good_payloads(fields: dict[str, Any], wire: bytes | None) -> None:
    assert_both_take({"id": "r1", "uri": "coap://meters/x", "method": "POST", **fields})


def test_good_requests() -> None:
    assert_both_take(
        {
            "id": "r1",
            "method": "iPATCH",
            "uri": "coap://meters.example:5683/v1/a%2Fb/?unit=C&x=%C3%A9&",
            "type": "NON",
            "content_format": "application/json",
            "accept": 60,
            "options": {"if_match": ["hex:0a1b", "v1"], "max_age": 60, "if_none_match": True},
            "payload": {"t": 21.5},
            "timeout": 5,
            "response_topic": f"{BASE}/response/app-7",
        }
    )
    assert_both_take({"id": "r1", "cancel": True, "response_topic": f"{BASE}/response/x"})
    assert_both_take({"id": "r1", "uri": "coap://meters/", "observe": True, "method": "FETCH"})
    assert_both_take({"id": "r1", "uri": "coap://meters/", "payload": "x" * 1024})
    assert_both_take({"id": "r1", "uri": "coap://meters/", "content_format": "60"})


@pytest.mark.parametrize("uri", cases.FORBIDDEN_URIS)
def test_allowed_hosts_are_policy_not_shape(uri: str) -> None:
    payload = json.dumps({"id": "r1", "uri": uri}).encode()
    with pytest.raises(TargetNotAllowed):
        parse_request(payload, SETTINGS)
    assert schema_problems(payload, SETTINGS) == []


@hypothesis_settings(max_examples=400)
@given(cases.requests)
def test_what_the_schema_takes_the_parser_takes(body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    if schema_problems(payload, SETTINGS):
        return
    try:
        parse_request(payload, SETTINGS)
    except TargetNotAllowed:
        pass  # policy, not shape
    except RequestRejected as exc:
        pytest.fail(f"the schema takes {body!r}, parse_request refuses it: {exc}")
