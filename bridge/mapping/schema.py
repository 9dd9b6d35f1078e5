"""The JSON Schema of the request object, as published on `<base>/info`. Pure.

`request.schema.json` beside this module is the generic schema (docs/asyncapi.yaml
refers to it); `request_schema(settings)` narrows it to one configuration: answers
only under this `<base>/response/`, payload strings within `coap.max_request_payload`,
server aliases without a port of their own, `modem` one of the configured names. Which
hosts are allowed is policy (`forbidden_target`), not shape: the info topic lists the
aliases instead.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from bridge.config import Settings

_SCHEMA_FILE = "request.schema.json"


@cache
def _generic() -> dict[str, Any]:
    text = resources.files("bridge.mapping").joinpath(_SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def generic_request_schema() -> dict[str, Any]:
    """The request schema of the contract, for any configuration (a fresh copy)."""
    return copy.deepcopy(_generic())


def _any_case(text: str) -> str:
    """A regex matching `text` in any letter case, without inline flags (ECMA 262 has none)."""
    return "".join(
        f"[{char.upper()}{char.lower()}]" if char.isalpha() else re.escape(char) for char in text
    )


def request_schema(settings: Settings) -> dict[str, Any]:
    """The request schema narrowed to `settings` (see the module docstring)."""
    schema = generic_request_schema()
    properties = schema["properties"]
    response = properties["response_topic"]
    generic_suffix = response["pattern"].split("/response/", 1)[1]
    response["pattern"] = f"^{re.escape(settings.mqtt.base_topic)}/response/{generic_suffix}"
    limit = settings.coap.max_request_payload
    # Length in characters bounds the bytes from below: what is longer is surely too big.
    longest = {"text": limit, "hex": 2 * limit, "base64": 4 * -(-limit // 3)}
    schema["allOf"].extend(
        {
            "if": {
                "required": ["payload_encoding"],
                "properties": {"payload_encoding": {"const": name}},
            },
            "then": {"properties": {"payload": {"maxLength": length}}},
        }
        for name, length in longest.items()
    )
    schema["allOf"].append(
        {
            "if": {"not": {"required": ["payload_encoding"]}},
            "then": {"properties": {"payload": {"maxLength": limit}}},
        }
    )
    aliases = [
        f"(?![Cc][Oo][Aa][Pp]://{_any_case(name)}:(?!{server.port}(?![0-9]))[0-9])"
        for name, server in settings.coap.servers.items()
    ]
    properties["uri"]["pattern"] = "^" + "".join(aliases) + properties["uri"]["pattern"][1:]
    properties["modem"]["enum"] = [modem.name for modem in settings.modems]
    return schema
