"""Answers are strict JSON (RFC 8259): never NaN or Infinity, whatever the server sent."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from bridge.mapping import error_to_json
from bridge.mapping.codecs import PayloadEncoding, decode_payload
from bridge.mqtt.answers import Answers
from bridge.mqtt.client import MqttClient

JSON = 50


def strict_loads(data: bytes | str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize("body", [b'{"t": 1e999}', b"[-1e400, 2]", b"1E+999"])
def test_json_number_beyond_a_double_is_answered_as_text(body: bytes) -> None:
    payload, encoding = decode_payload(body, JSON)

    assert (payload, encoding) == (body.decode(), PayloadEncoding.TEXT)
    strict_loads(json.dumps(payload, allow_nan=False))


def test_ordinary_json_numbers_still_decode_as_json() -> None:
    assert decode_payload(b'{"t": 1e300, "u": -0.5}', JSON) == (
        {"t": 1e300, "u": -0.5},
        PayloadEncoding.JSON,
    )


def test_an_answer_holding_infinity_is_never_published_as_infinity() -> None:
    # `encode` never touches the client: it only turns an answer into its payload.
    answers = Answers(cast(MqttClient, None), "coap-bridge/g1", error_to_json)

    payload = answers.encode("r1", {"id": "r1", "ok": True, "payload": float("inf")})

    answer = strict_loads(payload)
    assert answer["id"] == "r1"
    assert answer["error"]["kind"] == "internal"
