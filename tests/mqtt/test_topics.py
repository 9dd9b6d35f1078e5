"""Topic names and answer routing (mqtt-api.md, Topics and Request object)."""

from __future__ import annotations

import pytest

from bridge.mqtt.topics import (
    answer_topic,
    health_topic,
    is_under_response_prefix,
    request_topic,
    shared_request_filter,
    status_topic,
    topic_problem,
    unsolicited_topic,
)

BASE = "coap-bridge/g1"


def test_fixed_topics() -> None:
    assert request_topic(BASE) == "coap-bridge/g1/request"
    assert status_topic(BASE) == "coap-bridge/g1/status"
    assert health_topic(BASE) == "coap-bridge/g1/health"
    assert unsolicited_topic(BASE) == "coap-bridge/g1/unsolicited"
    assert (
        shared_request_filter("fleet", "coap-bridge/pool")
        == "$share/fleet/coap-bridge/pool/request"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"request_id": None, "mqtt5_response_topic": "app/t"}, f"{BASE}/response/invalid"),
        ({"request_id": "a1"}, f"{BASE}/response/a1"),
        ({"request_id": "a1", "body_response_topic": f"{BASE}/response/x"}, f"{BASE}/response/x"),
        (
            {
                "request_id": "a1",
                "body_response_topic": f"{BASE}/response/x",
                "mqtt5_response_topic": "app/replies",
            },
            "app/replies",
        ),
        ({"request_id": "a1", "mqtt5_response_topic": "app/+"}, f"{BASE}/response/a1"),
        ({"request_id": "a1", "mqtt5_response_topic": ""}, f"{BASE}/response/a1"),
    ],
)
def test_answer_routing(kwargs: dict[str, str | None], expected: str) -> None:
    assert answer_topic(BASE, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("topic", "inside"),
    [
        (f"{BASE}/response/a", True),
        (f"{BASE}/response/a/b", True),
        (f"{BASE}/response/", False),
        (f"{BASE}/responses/a", False),
        (f"{BASE}/response/+", False),
        (f"{BASE}/response/#", False),
        (f"{BASE}/response/a\x00", False),
        ("other/response/a", False),
    ],
)
def test_response_prefix(topic: str, inside: bool) -> None:
    assert is_under_response_prefix(BASE, topic) is inside


def test_topic_problems() -> None:
    assert topic_problem("a/b") is None
    assert topic_problem("") == "must not be empty"
    assert "'+'" in str(topic_problem("a/+"))
    assert "'#'" in str(topic_problem("#"))
    assert "NUL" in str(topic_problem("a\x00"))
    assert "65535" in str(topic_problem("x" * 65536))


@pytest.mark.parametrize("char", ["\x1b", "\x85", "\ufffe", "\U0001ffff", "\ufdd0"])
def test_topics_brokers_refuse_are_refused(char: str) -> None:
    problem = topic_problem(f"coap-bridge/gw/response/a{char}b")

    assert problem is not None
    assert f"U+{ord(char):04X}" in problem


def test_every_ascii_character_is_judged_alike_in_ascii_and_other_topics() -> None:
    # The ASCII fast path and the full check must agree on every character.
    for code in range(128):
        char = chr(code)
        refused = code < 0x20 or code == 0x7F or char in "+#"
        assert (topic_problem(f"a{char}b") is not None) is refused, repr(char)
        assert (topic_problem(f"\u00e9{char}b") is not None) is refused, repr(char)


def test_answer_to_an_unpublishable_id_goes_to_response_invalid() -> None:
    assert answer_topic("coap-bridge/gw", "a\ufffeb") == "coap-bridge/gw/response/invalid"
