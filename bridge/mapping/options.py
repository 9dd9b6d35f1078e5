"""CoAP options <-> JSON: the request `options` object and the response `options` field.

`parse_options` checks a request's `options` against the table of options a requester
may set (name, format and length per RFC 7252 §5.10 and the later option RFCs) and
returns them in wire form; it raises ValueError with a message for the requester.
`options_to_json` names a response's options, opaque values spelled "hex:..".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiocoap
from aiocoap.numbers import OptionNumber

from bridge.mapping.codecs import HEX_PREFIX, JsonValue, decode_hex


@dataclass(frozen=True)
class CoapOption:
    """One extra request option, already in its wire form (RFC 7252 §3.2)."""

    number: int
    value: bytes


@dataclass(frozen=True)
class _OptionSpec:
    number: int
    kind: str  # "uint" | "string" | "opaque" | "empty"
    min_length: int
    max_length: int
    repeatable: bool = False


# RFC 7252 §5.10, RFC 7641, RFC 7959 §4 (Size1/Size2), RFC 7967, RFC 8768, RFC 9175.
# Options the request fields already set (Uri-Path, Content-Format, Accept...) and the
# ones the CoAP stack manages (Block1/2, OSCORE) are left out on purpose.
_OPTIONS: Final = {
    "if_match": _OptionSpec(1, "opaque", 0, 8, repeatable=True),
    "uri_host": _OptionSpec(3, "string", 1, 255),
    "etag": _OptionSpec(4, "opaque", 1, 8, repeatable=True),
    "if_none_match": _OptionSpec(5, "empty", 0, 0),
    "observe": _OptionSpec(6, "uint", 0, 3),
    "uri_port": _OptionSpec(7, "uint", 0, 2),
    "max_age": _OptionSpec(14, "uint", 0, 4),
    "hop_limit": _OptionSpec(16, "uint", 1, 1),
    "size2": _OptionSpec(28, "uint", 0, 4),
    "size1": _OptionSpec(60, "uint", 0, 4),
    "echo": _OptionSpec(252, "opaque", 1, 40),
    "no_response": _OptionSpec(258, "uint", 0, 1),
    "request_tag": _OptionSpec(292, "opaque", 0, 8, repeatable=True),
}


def _encode_option_value(name: str, spec: _OptionSpec, value: object) -> bytes:
    what = f"options.{name}"
    if isinstance(value, str) and value.startswith(HEX_PREFIX):
        raw = decode_hex(value[len(HEX_PREFIX) :], what=what)
    elif spec.kind == "uint":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what} must be a non-negative integer or 'hex:...'")
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    elif spec.kind in ("string", "opaque") and isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        expected = "a string or 'hex:...'"
        raise ValueError(f"{what} must be {expected}, not {type(value).__name__}")
    if not spec.min_length <= len(raw) <= spec.max_length:
        raise ValueError(
            f"{what} must be {spec.min_length}-{spec.max_length} bytes long, not {len(raw)}"
        )
    return raw


def parse_options(value: object) -> tuple[CoapOption, ...]:
    """A request's `options` object as wire-form options. ValueError if bad."""
    if not isinstance(value, dict):
        raise ValueError("options must be an object of option names to values")
    unknown = sorted(set(value) - set(_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_OPTIONS))})"
        )
    options: list[CoapOption] = []
    for name, given in value.items():
        spec = _OPTIONS[name]
        if spec.kind == "empty":
            if not isinstance(given, bool):
                raise ValueError(f"options.{name} must be true or false")
            if given:
                options.append(CoapOption(spec.number, b""))
            continue
        values = given if isinstance(given, list) else [given]
        if len(values) > 1 and not spec.repeatable:
            raise ValueError(f"options.{name} takes one value, not a list")
        options.extend(
            CoapOption(spec.number, _encode_option_value(name, spec, item)) for item in values
        )
    return tuple(options)


# Options that have their own response field, or that the CoAP stack consumed.
_OWN_FIELD_OPTIONS: Final = frozenset(
    {OptionNumber.CONTENT_FORMAT, OptionNumber.OBSERVE, OptionNumber.BLOCK1, OptionNumber.BLOCK2}
)
_LIST_OPTIONS: Final = frozenset(
    {
        OptionNumber.LOCATION_PATH,
        OptionNumber.LOCATION_QUERY,
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        OptionNumber.IF_MATCH,
    }
)


def _option_json(number: Any, raw: bytes) -> JsonValue:
    option = number.create_option(decode=raw)
    value = option.value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # ContentFormat and other int enums: plain JSON numbers
    if isinstance(value, str):
        return value
    return HEX_PREFIX + raw.hex()


def _option_name(number: Any) -> str:
    name = getattr(number, "name", None)
    return name.lower() if isinstance(name, str) else f"option_{int(number)}"


def options_to_json(message: aiocoap.Message) -> dict[str, JsonValue]:
    """Response options by name: etag "hex:..", max_age 60, location_path [..] ..."""
    by_name: dict[str, list[JsonValue]] = {}
    repeated: set[str] = set()
    for option in message.opt.option_list():
        number = option.number
        if number in _OWN_FIELD_OPTIONS:
            continue
        name = _option_name(number)
        if number in _LIST_OPTIONS:
            repeated.add(name)
        by_name.setdefault(name, []).append(_option_json(number, bytes(option.encode())))
    return {
        name: values if name in repeated or len(values) > 1 else values[0]
        for name, values in by_name.items()
    }
