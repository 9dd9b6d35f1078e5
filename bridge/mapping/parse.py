"""Request JSON -> a validated `ParsedRequest` or `CancelRequest`, per mqtt-api.md. Pure.

`parse_request` raises a `RequestRejected` (`MalformedRequest`: invalid_request,
`TargetNotAllowed`: forbidden_target, `PlaintextRefused`: security) carrying the
request id and response topic when they were usable, so the front can route the error
object. A request to an alias with `oscore` is marked for protection (`oscore`); one
that would go unprotected to a server that requires OSCORE is refused. Where the
contract leaves room: method defaults to GET, type to CON, `"payload": null` is no
payload, an id has nothing a topic name may not hold (it may be a topic level: no `+`,
`#`, control characters, surrogates or noncharacters), duplicate keys are refused.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiocoap.numbers import OptionNumber

from bridge.config import Settings
from bridge.errors import BridgeError, ForbiddenTarget, InvalidRequest, SecurityError
from bridge.mapping.codecs import (
    Family,
    PayloadEncoding,
    content_format_number,
    encode_payload,
    family,
    refuse_json_constant,
)
from bridge.mapping.options import CoapOption, parse_options
from bridge.mapping.request import METHODS, CancelRequest, ParsedRequest
from bridge.mapping.uri import ParsedUri, parse_uri
from bridge.mqtt.topics import is_under_response_prefix, response_prefix, topic_problem

MAX_ID_LENGTH: Final = 64
_METHODS_BY_UPPER: Final = {method.upper(): method for method in METHODS}
_OBSERVABLE_METHODS: Final = ("GET", "FETCH")

REQUEST_FIELDS: Final = frozenset(
    {
        "id",
        "method",
        "uri",
        "type",
        "content_format",
        "accept",
        "options",
        "payload",
        "payload_encoding",
        "observe",
        "timeout",
        "modem",
        "retry",
        "response_topic",
        "cancel",
    }
)
_CANCEL_FIELDS: Final = frozenset({"id", "cancel", "response_topic"})


class RequestRejected(BridgeError):
    """A request refused before reaching CoAP; knows where its error object goes."""

    def __init__(
        self, message: str, *, request_id: str | None, response_topic: str | None = None
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.response_topic = response_topic


class MalformedRequest(RequestRejected, InvalidRequest):
    """invalid_request: bad JSON, field, URI, option, payload or response topic."""


class TargetNotAllowed(RequestRejected, ForbiddenTarget):
    """forbidden_target: the host is neither a configured server nor in allow_hosts."""


class PlaintextRefused(RequestRejected, SecurityError):
    """security: a plaintext request to the host:port of a server that requires OSCORE."""


def max_request_bytes(settings: Settings) -> int:
    """Largest MQTT request payload parsed; hex doubles the CoAP payload, JSON adds a bit."""
    return 2 * settings.coap.max_request_payload + 64 * 1024


def _request_id(body: dict[str, Any]) -> str | None:
    value = body.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return None
    # The id may name a topic level: what no broker accepts in a topic is refused too.
    if topic_problem(value) is not None:
        return None
    return value


def _id_problem(body: dict[str, Any]) -> str:
    if "id" not in body:
        return "missing field id"
    value = body["id"]
    if not isinstance(value, str):
        return "id must be a string"
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"id must be 1-{MAX_ID_LENGTH} characters long"
    return (
        "id must not contain '+', '#', control characters, surrogates or Unicode "
        "noncharacters (it may be used as a topic level)"
    )


def _response_topic(value: object, settings: Settings) -> str | None:
    if value is None:
        return None
    base = settings.mqtt.base_topic
    if not isinstance(value, str) or not is_under_response_prefix(base, value):
        raise ValueError(
            f"response_topic must be a topic under {response_prefix(base)} without '+', '#' or NUL"
        )
    return value


def _choice(body: dict[str, Any], field: str, choices: dict[str, str], default: str) -> str:
    value = body.get(field, default)
    if isinstance(value, str) and value.upper() in choices:
        return choices[value.upper()]
    listed = ", ".join(dict.fromkeys(choices.values()))
    raise ValueError(f"{field} must be one of {listed}, not {value!r}")


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false")
    return value


def _timeout(body: dict[str, Any], settings: Settings) -> float:
    value = body.get("timeout")
    if value is None:
        return settings.coap.default_timeout
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("timeout must be a number of seconds greater than 0")
    # Compare before converting: float() of a huge JSON integer overflows.
    if value >= settings.coap.max_timeout:
        return settings.coap.max_timeout
    return float(value)


def _modem(body: dict[str, Any], target: ParsedUri, settings: Settings) -> str | None:
    """The modem the request must go through: its own `modem`, else its alias's."""
    value = body.get("modem")
    if value is None:
        alias = settings.coap.servers[target.alias] if target.alias is not None else None
        return alias.modem if alias is not None and alias.modem else None
    if not isinstance(value, str) or settings.modem_named(value) is None:
        names = ", ".join(modem.name for modem in settings.modems)
        raise ValueError(f"modem must name a configured modem ({names}), not {value!r}")
    return value


def _optional_format(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        return content_format_number(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _payload(body: dict[str, Any], content_format: int | None, settings: Settings) -> bytes:
    value = body.get("payload")
    given = body.get("payload_encoding")
    if given is None:
        # A string for a CBOR content format is a CBOR text string: raw UTF-8 is not CBOR.
        as_text = isinstance(value, str) and family(content_format) is not Family.CBOR
        encoding = PayloadEncoding.TEXT if as_text else PayloadEncoding.JSON
    else:
        try:
            encoding = PayloadEncoding(given)
        except ValueError:
            raise ValueError(
                f"payload_encoding must be json, text, base64 or hex, not {given!r}"
            ) from None
    if value is None:
        return b""
    payload = encode_payload(value, encoding, content_format)
    limit = settings.coap.max_request_payload
    if len(payload) > limit:
        raise ValueError(
            f"payload is {len(payload)} bytes, more than coap.max_request_payload ({limit})"
        )
    return payload


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ValueError("duplicate field in a JSON object")
    return body


# Built once: json.loads with hooks builds a new decoder on every call.
_REQUEST_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicates, parse_constant=refuse_json_constant
)


def _load_json(payload: bytes) -> object:
    return _REQUEST_JSON.decode(payload.decode("utf-8"))


def parse_request(payload: bytes, settings: Settings) -> ParsedRequest | CancelRequest:
    """One MQTT request payload -> a validated request. Raises RequestRejected."""
    limit = max_request_bytes(settings)
    if len(payload) > limit:
        raise MalformedRequest(
            f"request is {len(payload)} bytes, more than the {limit} bytes accepted",
            request_id=None,
        )
    try:
        body = _load_json(payload)
    except RecursionError:
        raise MalformedRequest("request JSON is nested too deeply", request_id=None) from None
    except ValueError as exc:
        raise MalformedRequest(f"request is not valid JSON: {exc}", request_id=None) from None
    if not isinstance(body, dict):
        raise MalformedRequest("request must be a JSON object", request_id=None)
    request_id = _request_id(body)
    if request_id is None:
        raise MalformedRequest(_id_problem(body), request_id=None)
    try:
        response_topic = _response_topic(body.get("response_topic"), settings)
    except ValueError as exc:
        raise MalformedRequest(str(exc), request_id=request_id) from None
    try:
        return _parse_fields(body, request_id, response_topic, settings)
    except (TargetNotAllowed, PlaintextRefused):
        raise
    except RecursionError:
        message = "payload is nested too deeply"
        raise MalformedRequest(
            message, request_id=request_id, response_topic=response_topic
        ) from None
    except ValueError as exc:
        raise MalformedRequest(
            str(exc), request_id=request_id, response_topic=response_topic
        ) from None


def _protection(
    target: ParsedUri, settings: Settings, request_id: str, response_topic: str | None
) -> str | None:
    """The alias whose OSCORE context protects the request; refuses plaintext where required."""
    servers = settings.coap.servers
    if target.alias is not None and servers[target.alias].oscore is not None:
        return target.alias
    required_by = settings.coap.oscore_required_by(target.host, target.port)
    if required_by is not None:
        raise PlaintextRefused(
            f"plaintext request to {target.host}:{target.port} refused: server {required_by} "
            f"requires OSCORE there (coap.servers.{required_by}.require_oscore); "
            f"address it as coap://{required_by}/...",
            request_id=request_id,
            response_topic=response_topic,
        )
    return None


def _registers(options: tuple[CoapOption, ...], observe: bool) -> bool:
    """Whether `options.observe` registers an observation (0, RFC 7641 §2).

    1 deregisters, in a plain request; no other value means anything in a request.
    """
    values = [option.value for option in options if option.number == OptionNumber.OBSERVE]
    if not values:
        return False
    value = int.from_bytes(values[0], "big")
    if value == 0:
        return True
    if value == 1 and not observe:
        return False
    raise ValueError(
        "options.observe is 0 (register: the request is an observation, as with "
        '"observe": true) or 1 (deregister, in a request without "observe": true)'
    )


def _parse_fields(
    body: dict[str, Any], request_id: str, response_topic: str | None, settings: Settings
) -> ParsedRequest | CancelRequest:
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    if _flag(body, "cancel"):
        extra = sorted(set(body) - _CANCEL_FIELDS)
        if extra:
            raise ValueError(f"a cancel request takes only id (and response_topic), not {extra}")
        return CancelRequest(request_id, response_topic)
    if "uri" not in body:
        raise ValueError("missing field uri")
    target = parse_uri(body["uri"], settings)
    if not settings.coap.is_allowed_host(target.host):
        raise TargetNotAllowed(
            f"host {target.host} is neither a configured server (coap.servers) "
            "nor in coap.allow_hosts",
            request_id=request_id,
            response_topic=response_topic,
        )
    oscore = _protection(target, settings, request_id, response_topic)
    method = _choice(body, "method", _METHODS_BY_UPPER, "GET")
    confirmable = _choice(body, "type", {"CON": "CON", "NON": "NON"}, "CON") == "CON"
    content_format = _optional_format(body, "content_format")
    observe = _flag(body, "observe")
    options = parse_options(body.get("options", {}))
    if _registers(options, observe):
        # The server would keep notifying: only an observation reads (and ends) a stream.
        observe = True
        options = tuple(option for option in options if option.number != OptionNumber.OBSERVE)
    if observe and method not in _OBSERVABLE_METHODS:
        raise ValueError(f"observe needs method GET or FETCH, not {method}")
    return ParsedRequest(
        id=request_id,
        method=method,
        uri=body["uri"],
        host=target.host,
        port=target.port,
        path=target.path,
        query=target.query,
        confirmable=confirmable,
        content_format=content_format,
        accept=_optional_format(body, "accept"),
        options=options,
        payload=_payload(body, content_format, settings),
        observe=observe,
        timeout=_timeout(body, settings),
        response_topic=response_topic,
        oscore=oscore,
        modem=_modem(body, target, settings),
        retry=_flag(body, "retry"),
    )
