"""MQTT topic names of the bridge (see the MQTT contract, mqtt-api.md).

Pure functions: the config uses them to check topic segments at load time, the
request mapping to check `response_topic`, the MQTT front to route answers.
"""

from __future__ import annotations

import re

# `+` and `#` are wildcards, only valid in subscriptions; NUL is forbidden in any
# MQTT UTF-8 string (MQTT 5 §1.5.4, MQTT 3.1.1 §1.5.3).
_FORBIDDEN_IN_TOPIC = ("+", "#", "\x00")
# Surrogates cannot be encoded as UTF-8 at all; control characters and Unicode
# noncharacters are "SHOULD NOT" in MQTT 5 §1.5.4, and mosquitto treats a PUBLISH to
# such a topic as a malformed packet and drops the connection. An answer to one would
# be redelivered and re-published forever, so they are refused like wildcards.
_UNPUBLISHABLE = re.compile(
    "[\x01-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(
        f"{chr(plane | 0xFFFE)}{chr(plane | 0xFFFF)}" for plane in range(0, 0x110000, 0x10000)
    )
    + "]"
)

INVALID_SUFFIX = "invalid"
"""`<base>/response/invalid` answers requests without a usable id."""


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be a topic name we publish to or build on, or None if it can."""
    if not topic:
        return "must not be empty"
    # The common case, checked for every request and answer: an ASCII topic of at most
    # 65535 bytes whose only problems could be wildcards and control characters (the
    # ASCII characters that are not printable: NUL, U+0001-U+001F, U+007F). The regular
    # expression below costs ten times these tests.
    if (
        topic.isascii()
        and topic.isprintable()
        and "+" not in topic
        and "#" not in topic
        and len(topic) <= 65535
    ):
        return None
    for char in _FORBIDDEN_IN_TOPIC:
        if char in topic:
            shown = "NUL" if char == "\x00" else repr(char)
            return f"must not contain {shown} (wildcards and NUL are not allowed in a topic name)"
    unpublishable = _UNPUBLISHABLE.search(topic)
    if unpublishable is not None:
        return (
            f"must not contain U+{ord(unpublishable.group()):04X} (control characters, "
            "surrogates and Unicode noncharacters are refused by MQTT brokers)"
        )
    if len(topic.encode("utf-8")) > 65535:
        return "is longer than the 65535 bytes MQTT allows"
    return None


def request_topic(base: str) -> str:
    return f"{base}/request"


def response_prefix(base: str) -> str:
    return f"{base}/response/"


def status_topic(base: str) -> str:
    return f"{base}/status"


def health_topic(base: str) -> str:
    return f"{base}/health"


def unsolicited_topic(base: str) -> str:
    return f"{base}/unsolicited"


def info_topic(base: str) -> str:
    return f"{base}/info"


def shared_request_filter(shared_group: str, pool_topic: str) -> str:
    """The fleet-mode subscription (MQTT 5 shared subscription, §4.8.2)."""
    return f"$share/{shared_group}/{pool_topic}/request"


def is_under_response_prefix(base: str, topic: str) -> bool:
    """True when `topic` is a valid topic strictly below `<base>/response/`."""
    prefix = response_prefix(base)
    return topic.startswith(prefix) and len(topic) > len(prefix) and topic_problem(topic) is None


def answer_topic(
    base: str,
    request_id: str | None,
    *,
    body_response_topic: str | None = None,
    mqtt5_response_topic: str | None = None,
) -> str:
    """Where the answer (response or error object) to one request goes.

    The contract's order: a request without a usable id always goes to
    `<base>/response/invalid`; otherwise the MQTT 5 Response Topic property wins, then
    the request's `response_topic` field (already checked by the mapping), then
    `<base>/response/<id>`. An MQTT 5 Response Topic that is not a valid topic name is
    ignored rather than published to (the publish would fail and the answer be lost).
    """
    if request_id is None:
        return response_prefix(base) + INVALID_SUFFIX
    if mqtt5_response_topic and topic_problem(mqtt5_response_topic) is None:
        return mqtt5_response_topic
    if body_response_topic:
        return body_response_topic
    topic = response_prefix(base) + request_id
    # An id the mapping let through can still make a topic no broker accepts.
    return topic if topic_problem(topic) is None else response_prefix(base) + INVALID_SUFFIX
