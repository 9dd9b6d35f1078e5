"""A dedupe cache entry gives back the digest and the answer it was made of, byte for byte."""

from __future__ import annotations

import json
import os

import pytest

from bridge.mqtt.answers import Delivered
from bridge.mqtt.inflight import request_digest

SMALL = json.dumps(
    {
        "id": "r-1",
        "ok": True,
        "code": "2.05",
        "code_name": "Content",
        "content_format": "application/json",
        "options": {"content_format": "application/json"},
        "payload": {"temp": 21.5},
        "payload_encoding": "json",
        "rtt_ms": 12.5,
    }
).encode()


@pytest.mark.parametrize(
    "answer",
    [
        Delivered(SMALL, None),
        Delivered(b'{"id": "r-2", "ok": false, "error": {"kind": "timeout"}}', "timeout"),
        Delivered(json.dumps({"id": "r-3", "payload": os.urandom(3000).hex()}).encode(), None),
        Delivered(b"", None),
        Delivered('{"id": "\u00e9\u6e29"}'.encode(), "internal"),
    ],
)
def test_round_trip(answer: Delivered) -> None:
    digest = request_digest(answer.payload + b"request")
    assert Delivered.from_cache_entry(answer.cache_entry(digest)) == (digest, answer)


def test_a_small_answer_is_stored_in_a_fraction_of_its_size() -> None:
    entry = Delivered(SMALL, None).cache_entry(request_digest(b"request"))
    assert len(entry) < len(SMALL) / 2
