"""Ids the contract refuses never reach CoAP, and their error carries "id": null."""

from __future__ import annotations

import json

import pytest

from bridge.config import Settings
from bridge.mapping import MalformedRequest, ParsedRequest, error_to_json, parse_request


@pytest.mark.parametrize(
    "escaped",
    [
        pytest.param(r"a\u0085b", id="C1-next-line"),
        pytest.param(r"\u009f", id="C1-last"),
        pytest.param(r"x\ufffe", id="noncharacter-fffe"),
        pytest.param(r"\ufdd0", id="noncharacter-fdd0"),
        pytest.param(r"\ud83f\udffe", id="noncharacter-plane-1"),
        pytest.param(r"a\ud800", id="lone-high-surrogate"),
        pytest.param(r"\udc00z", id="lone-low-surrogate"),
    ],
)
def test_unpublishable_id_is_refused_as_no_usable_id(settings: Settings, escaped: str) -> None:
    payload = b'{"id": "%s", "uri": "coap://meters/v1/temp"}' % escaped.encode()

    with pytest.raises(MalformedRequest, match="id must not contain") as raised:
        parse_request(payload, settings)

    assert raised.value.request_id is None
    assert error_to_json(raised.value.request_id, raised.value)["id"] is None


@pytest.mark.parametrize("request_id", ["a/b", "é-ü", "日本", "\U0001f600", "tab\u00a0nbsp"])
def test_printable_unicode_ids_are_still_accepted(settings: Settings, request_id: str) -> None:
    payload = json.dumps({"id": request_id, "uri": "coap://meters/"}).encode()
    request = parse_request(payload, settings)
    assert isinstance(request, ParsedRequest)
    assert request.id == request_id
