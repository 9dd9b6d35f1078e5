"""Content-format codecs: payload bytes <-> JSON values, per the MQTT contract. Pure.

Content formats are CoAP numbers (RFC 7252 §12.3), named after aiocoap's copy of the
IANA registry. `encode_payload` builds a request payload; `decode_payload` gives a
response's `payload`/`payload_encoding`, falling back to base64 when the payload does
not parse as its format. Without a Content-Format, readable UTF-8 (no control
characters but tab, CR, LF) and any UTF-8 diagnostic payload of a 4.xx/5.xx are text.
What it returns always survives `json.dumps(allow_nan=False)`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import io
import json
import math
import re
from enum import Enum, StrEnum
from typing import cast

import cbor2
from aiocoap.numbers import ContentFormat

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

HEX_PREFIX = "hex:"

# Names people write that the registry spells differently (RFC 7252 §12.3 registers
# text/plain only with its charset).
_NAME_ALIASES = {"text/plain": 0}

# Unicode's control characters (C0, DEL, C1) except tab, LF and CR.
_UNREADABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class PayloadEncoding(StrEnum):
    JSON = "json"
    TEXT = "text"
    BASE64 = "base64"
    HEX = "hex"


class Family(Enum):
    """How a content format's payload is read and written."""

    JSON = "json"
    CBOR = "cbor"
    TEXT = "text"
    OPAQUE = "opaque"


# Cached: every response asks twice, and aiocoap builds a ContentFormat each time. The
# registry is fixed, so an answer never changes; few formats are ever in use.
@functools.lru_cache(maxsize=256)
def media_type(number: int) -> str | None:
    """The registered media type (with parameters) of a content format, if known."""
    content_format = ContentFormat(number)
    if not content_format.is_known():
        return None
    name = str(content_format.media_type)
    encoding = str(content_format.encoding)
    # Keep the content-coding visible: 11050 is deflated JSON, not JSON.
    return name if encoding == "identity" else f"{name}; encoding={encoding}"


def content_format_number(value: object) -> int:
    """A content format given by name or number, as its number.

    Raises ValueError with a message fit for the requester.
    """
    if isinstance(value, bool):
        raise ValueError("must be a media type name or a number, not a boolean")
    if isinstance(value, int):
        if 0 <= value <= 0xFFFF:
            return value
        raise ValueError(f"{value} is outside 0-65535")
    if isinstance(value, str):
        name = value.strip().lower()
        if name.isascii() and name.isdigit():
            return content_format_number(int(name))
        if name in _NAME_ALIASES:
            return _NAME_ALIASES[name]
        try:
            return int(ContentFormat.by_media_type(name))
        except KeyError:
            raise ValueError(
                f"unknown content format {value!r}; use a registered media type such as "
                '"application/json", "application/cbor", "text/plain;charset=utf-8", '
                "or its number"
            ) from None
    raise ValueError("must be a media type name or a number")


def content_format_name(number: int) -> str | int:
    """What a response's `content_format` field shows: the media type, else the number."""
    name = media_type(number)
    return name if name is not None else number


@functools.lru_cache(maxsize=256)
def family(number: int | None) -> Family:
    if number is None:
        return Family.OPAQUE
    name = media_type(number)
    if name is None or "encoding=" in name:
        return Family.OPAQUE
    base = name.split(";", 1)[0].strip()
    if base == "application/json" or base.endswith("+json"):
        return Family.JSON
    if base == "application/cbor" or base.endswith("+cbor"):
        return Family.CBOR
    if base.startswith("text/") or base == "application/link-format":
        return Family.TEXT
    return Family.OPAQUE


# --- requests: JSON value -> bytes ------------------------------------------------------


def compact_json(value: JsonValue) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_payload(
    value: JsonValue, encoding: PayloadEncoding, content_format: int | None
) -> bytes:
    """The request payload on the wire. Raises ValueError with a message for the requester."""
    if encoding is PayloadEncoding.JSON:
        if family(content_format) is Family.CBOR:
            try:
                # canonical: shortest floats and sorted keys, fewer bytes on a 512-byte link
                return cbor2.dumps(value, canonical=True)
            except cbor2.CBOREncodeError as exc:
                raise ValueError(f"payload cannot be encoded as CBOR ({exc})") from None
        return compact_json(value)
    if not isinstance(value, str):
        raise ValueError(f"payload must be a string with payload_encoding {encoding.value!r}")
    if encoding is PayloadEncoding.TEXT:
        return value.encode("utf-8")
    if encoding is PayloadEncoding.BASE64:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"payload is not valid base64 ({exc})") from None
    return decode_hex(value, what="payload")


def decode_hex(text: str, *, what: str) -> bytes:
    """Strict hex (even length, digits only, no spaces)."""
    if len(text) % 2 or any(char not in "0123456789abcdefABCDEF" for char in text):
        raise ValueError(f"{what} is not valid hex (an even number of 0-9a-f digits)")
    return bytes.fromhex(text)


# --- responses: bytes -> JSON value -----------------------------------------------------


def decode_payload(
    payload: bytes, content_format: int | None, *, diagnostic: bool = False
) -> tuple[JsonValue, PayloadEncoding]:
    """The `payload` and `payload_encoding` fields of a response object.

    A payload that does not parse as its declared format falls back to base64 (the
    `content_format` field still says what the server claimed). Without a content
    format, readable UTF-8 is text; `diagnostic` (a 4.xx/5.xx, RFC 7252 §5.5.2: its
    payload is UTF-8 text) lets control characters through, but invalid UTF-8 stays
    base64 so that no byte is lost.
    """
    if not payload:
        return "", PayloadEncoding.TEXT
    kind = family(content_format)
    try:
        if kind is Family.JSON:
            try:
                return _strict_json(payload), PayloadEncoding.JSON
            except _NonFiniteNumber:
                # Valid JSON text, but no strict JSON parser could read its value back.
                return payload.decode("utf-8"), PayloadEncoding.TEXT
        if kind is Family.CBOR:
            return cbor_to_json(_single_cbor_item(payload)), PayloadEncoding.JSON
        if kind is Family.TEXT:
            return payload.decode("utf-8"), PayloadEncoding.TEXT
        if content_format is None:
            text = payload.decode("utf-8")
            if diagnostic or not _UNREADABLE.search(text):
                return text, PayloadEncoding.TEXT
    except (ValueError, RecursionError, cbor2.CBORDecodeError):
        pass
    return base64.b64encode(payload).decode("ascii"), PayloadEncoding.BASE64


def refuse_json_constant(name: str) -> JsonValue:
    """A `parse_constant` hook: NaN and the infinities are not JSON (RFC 8259 §6)."""
    raise ValueError(f"{name} is not valid JSON")


class _NonFiniteNumber(ValueError):
    """A JSON number too large for a double (`1e999`): it would be published as Infinity."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(f"{text} does not fit a double")
    return value


# Built once: json.loads with hooks builds a new decoder on every call.
_STRICT_JSON = json.JSONDecoder(parse_constant=refuse_json_constant, parse_float=_finite_float)


def _strict_json(payload: bytes) -> JsonValue:
    return cast(JsonValue, _STRICT_JSON.decode(payload.decode("utf-8")))


def _single_cbor_item(payload: bytes) -> object:
    stream = io.BytesIO(payload)
    item: object = cbor2.CBORDecoder(stream).decode()
    if stream.tell() != len(payload):
        raise ValueError("trailing bytes after the CBOR item")
    return item


def cbor_to_json(item: object) -> JsonValue:
    """A decoded CBOR item as a JSON value.

    Byte strings become "hex:<hex>" (the spelling of opaque request option values),
    map keys that are not text their JSON text (a map whose keys would then collide,
    such as 1 and "1", becomes a list of [key, value] pairs: no entry is lost),
    NaN/±inf the strings "NaN", "Infinity", "-Infinity", tags {"tag": n, "value": v}
    except those cbor2 decodes itself (date/time as ISO 8601, others by `str()`),
    undefined null, simple values their number, sets a list.
    """
    if item is None or isinstance(item, bool | int | str):
        return item
    if isinstance(item, float):
        if math.isnan(item):
            return "NaN"
        if math.isinf(item):
            return "Infinity" if item > 0 else "-Infinity"
        return item
    if isinstance(item, bytes | bytearray | memoryview):
        return HEX_PREFIX + bytes(item).hex()
    if isinstance(item, list | tuple | set | frozenset):
        return [cbor_to_json(element) for element in item]
    if isinstance(item, dict):
        converted = {_json_key(key): cbor_to_json(value) for key, value in item.items()}
        if len(converted) == len(item):
            return converted
        # Keys that differ in CBOR (1 and "1") would merge into one JSON key.
        return [[cbor_to_json(key), cbor_to_json(value)] for key, value in item.items()]
    if isinstance(item, cbor2.CBORTag):
        return {"tag": int(item.tag), "value": cbor_to_json(item.value)}
    if isinstance(item, cbor2.CBORSimpleValue):
        return int(item.value)
    if item is cbor2.undefined:
        return None
    if isinstance(item, datetime.datetime | datetime.date):
        return item.isoformat()
    return str(item)


def _json_key(key: object) -> str:
    if isinstance(key, str):
        return key
    converted = cbor_to_json(key)
    if isinstance(converted, str):
        return converted
    return json.dumps(converted, separators=(",", ":"), allow_nan=False)
