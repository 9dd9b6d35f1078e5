"""Request JSON <-> CoAP messages, per the MQTT contract (mqtt-api.md). Pure: no I/O.

`parse_request` turns one MQTT request payload into a `ParsedRequest` (or a
`CancelRequest`), refusing anything the contract does not allow with a
`RequestRejected` error (an `InvalidRequest` or `ForbiddenTarget`) that carries the
request id and body response topic when they were usable, so the MQTT front can
route the error object. `to_coap_message` builds the aiocoap request;
`response_to_json` / `error_to_json` build the answer objects.

Details the contract leaves open, decided here:

- `method` defaults to GET, `type` to CON; `"payload": null` means no payload.
- `content_format` is sent only when given (never guessed from the payload).
- An MQTT payload larger than `max_request_bytes(settings)` (2 x
  coap.max_request_payload + 64 KiB: room for hex or base64 and the JSON around it)
  is refused before it is parsed.
- The request id must not contain `+`, `#` or control characters: it may become a
  topic level (`<base>/response/<id>`). Duplicate JSON keys are refused.
- `observe: true` needs GET or FETCH (RFC 7641, RFC 8132) and sets Observe 0.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final, cast

import aiocoap
from aiocoap.message import UndecidedRemote
from aiocoap.numbers import OptionNumber
from aiocoap.numbers.codes import Code

from bridge.codecs import (
    HEX_PREFIX,
    JsonValue,
    PayloadEncoding,
    content_format_name,
    content_format_number,
    decode_hex,
    decode_payload,
    encode_payload,
)
from bridge.config import Settings, normalize_host
from bridge.errors import BridgeError, ForbiddenTarget, InvalidRequest, ModemError
from bridge.topics import is_under_response_prefix, response_prefix

MAX_ID_LENGTH: Final = 64
METHODS: Final = ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH")
_METHODS_BY_UPPER: Final = {method.upper(): method for method in METHODS}
_OBSERVABLE_METHODS: Final = ("GET", "FETCH")

_REQUEST_FIELDS: Final = frozenset(
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
        "response_topic",
        "cancel",
    }
)
_CANCEL_FIELDS: Final = frozenset({"id", "cancel", "response_topic"})
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


# --- errors -----------------------------------------------------------------------------


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


# --- parsed requests --------------------------------------------------------------------


@dataclass(frozen=True)
class CoapOption:
    """One extra request option, already in its wire form (RFC 7252 §3.2)."""

    number: int
    value: bytes


@dataclass(frozen=True)
class ParsedRequest:
    id: str
    method: str  # one of METHODS
    uri: str  # as the requester wrote it (for logs and messages)
    host: str  # normalized target host: lowercase name or IP literal without brackets
    port: int
    path: tuple[str, ...]  # decoded Uri-Path segments
    query: tuple[str, ...]  # decoded Uri-Query items
    confirmable: bool
    content_format: int | None
    accept: int | None
    options: tuple[CoapOption, ...]
    payload: bytes
    observe: bool
    timeout: float  # seconds, > 0, already capped by coap.max_timeout
    response_topic: str | None  # the body's response_topic (checked), or None

    @property
    def target(self) -> str:
        """host:port as messages show it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CancelRequest:
    """`{"id": ..., "cancel": true}`: stop the observation started with that id."""

    id: str
    response_topic: str | None


# --- request options --------------------------------------------------------------------


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


def _parse_options(value: object) -> tuple[CoapOption, ...]:
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


# --- URIs -------------------------------------------------------------------------------


def _decode_component(text: str, what: str) -> str:
    if _BAD_PERCENT.search(text):
        raise ValueError(f"bad percent-encoding in the URI {what}")
    try:
        decoded = urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"percent-encoded URI {what} is not UTF-8") from None
    if len(decoded.encode("utf-8")) > 255:
        raise ValueError(f"a URI {what} segment is longer than 255 bytes")
    return decoded


_ParsedUri = tuple[str, int, tuple[str, ...], tuple[str, ...]]


def _parse_uri(uri: object, settings: Settings) -> _ParsedUri:
    """(host, port, path, query) of a coap:// URI, aliases resolved. ValueError if bad."""
    if not isinstance(uri, str) or not uri:
        raise ValueError("uri must be a non-empty string such as coap://host/path")
    # urlsplit silently drops tabs and newlines (WHATWG); refuse them instead.
    if _CONTROL_CHARS.search(uri) or " " in uri:
        raise ValueError("uri must not contain spaces or control characters")
    if "#" in uri:
        raise ValueError("uri must not have a fragment (#...)")
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise ValueError(f"uri is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "coaps":
        raise ValueError("coaps:// is not supported (the modem's CoAP client has no DTLS)")
    if scheme != "coap":
        raise ValueError(f"uri scheme must be coap://, not {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise ValueError("uri must not contain user information (user@host)")
    if not parts.hostname:
        raise ValueError("uri has no host")
    if "%" in parts.netloc:
        raise ValueError("uri host must not be percent-encoded")
    try:
        explicit_port = parts.port
    except ValueError:
        raise ValueError("uri port must be a number from 1 to 65535") from None
    if explicit_port == 0:
        raise ValueError("uri port must be a number from 1 to 65535")
    host_text = parts.hostname
    server = settings.coap.servers.get(host_text)
    if server is not None:
        if explicit_port is not None and explicit_port != server.port:
            raise ValueError(
                f"{host_text} is a server alias (port {server.port}); drop the port {explicit_port}"
            )
        host, port = server.host, server.port
    else:
        try:
            host = normalize_host(host_text)
        except ValueError as exc:
            raise ValueError(f"uri host {exc}") from None
        port = explicit_port if explicit_port is not None else aiocoap.COAP_PORT
    raw_path = parts.path
    if raw_path in ("", "/"):
        path: tuple[str, ...] = ()
    else:
        path = tuple(_decode_component(s, "path") for s in raw_path[1:].split("/"))
    query = tuple(_decode_component(q, "query") for q in parts.query.split("&") if parts.query)
    return host, port, path, query


class _UriMemo:
    """`_parse_uri` results of the URIs seen lately, for the servers they were parsed with.

    Requesters poll the same few URIs over and over, and urllib's split plus the checks
    cost more than the rest of parsing a request. Only results are kept (a bad URI is
    refused afresh each time); they depend on `coap.servers` alone, so a reload that
    changes it starts over. Bounded: past `max_entries` it starts over too.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._servers: object = None
        self._parsed: dict[str, _ParsedUri] = {}

    def parse(self, uri: object, settings: Settings) -> _ParsedUri:
        servers = settings.coap.servers
        if servers is not self._servers:
            self._servers = servers
            self._parsed.clear()
        if isinstance(uri, str):
            known = self._parsed.get(uri)
            if known is not None:
                return known
        parsed = _parse_uri(uri, settings)
        if len(self._parsed) >= self._max_entries:
            self._parsed.clear()
        self._parsed[cast(str, uri)] = parsed
        return parsed


_URIS: Final = _UriMemo()


# --- fields -----------------------------------------------------------------------------


def max_request_bytes(settings: Settings) -> int:
    """Largest MQTT request payload parsed; hex doubles the CoAP payload, JSON adds a bit."""
    return 2 * settings.coap.max_request_payload + 64 * 1024


def _request_id(body: dict[str, Any]) -> str | None:
    value = body.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return None
    if _CONTROL_CHARS.search(value) or "+" in value or "#" in value:
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
    return "id must not contain '+', '#' or control characters (it may be used in a topic)"


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
        encoding = PayloadEncoding.TEXT if isinstance(value, str) else PayloadEncoding.JSON
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


# --- parse_request ----------------------------------------------------------------------


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ValueError("duplicate field in a JSON object")
    return body


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with hooks builds a new decoder on every call.
_REQUEST_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
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
    except TargetNotAllowed:
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


def _parse_fields(
    body: dict[str, Any], request_id: str, response_topic: str | None, settings: Settings
) -> ParsedRequest | CancelRequest:
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    if _flag(body, "cancel"):
        extra = sorted(set(body) - _CANCEL_FIELDS)
        if extra:
            raise ValueError(f"a cancel request takes only id (and response_topic), not {extra}")
        return CancelRequest(request_id, response_topic)
    if "uri" not in body:
        raise ValueError("missing field uri")
    host, port, path, query = _URIS.parse(body["uri"], settings)
    if not settings.coap.is_allowed_host(host):
        raise TargetNotAllowed(
            f"host {host} is neither a configured server (coap.servers) nor in coap.allow_hosts",
            request_id=request_id,
            response_topic=response_topic,
        )
    method = _choice(body, "method", _METHODS_BY_UPPER, "GET")
    confirmable = _choice(body, "type", {"CON": "CON", "NON": "NON"}, "CON") == "CON"
    content_format = _optional_format(body, "content_format")
    observe = _flag(body, "observe")
    options = _parse_options(body.get("options", {}))
    if observe and method not in _OBSERVABLE_METHODS:
        raise ValueError(f"observe needs method GET or FETCH, not {method}")
    if observe and any(option.number == OptionNumber.OBSERVE for option in options):
        raise ValueError("set either observe or options.observe, not both")
    return ParsedRequest(
        id=request_id,
        method=method,
        uri=body["uri"],
        host=host,
        port=port,
        path=path,
        query=query,
        confirmable=confirmable,
        content_format=content_format,
        accept=_optional_format(body, "accept"),
        options=options,
        payload=_payload(body, content_format, settings),
        observe=observe,
        timeout=_timeout(body, settings),
        response_topic=response_topic,
    )


# --- to CoAP ----------------------------------------------------------------------------


def _is_ip_literal(host: str) -> bool:
    return ":" in host or all(part.isdigit() for part in host.split("."))


def to_coap_message(request: ParsedRequest) -> aiocoap.Message:
    """The aiocoap request for `request`, without any name resolution.

    The remote is an `UndecidedRemote` carrying host:port as written (the modem
    resolves names in AT+GTCOAPOPEN). Uri-Host is sent for host names only, as
    RFC 7252 §6.4 does; Uri-Port is never sent (it equals the destination port).
    """
    tuning = aiocoap.Reliable() if request.confirmable else aiocoap.Unreliable()
    message = aiocoap.Message(
        code=getattr(Code, request.method), payload=request.payload, transport_tuning=tuning
    )
    message.remote = UndecidedRemote("coap", _hostinfo(request.host, request.port))
    if not _is_ip_literal(request.host):
        message.opt.uri_host = request.host
    message.opt.uri_path = request.path
    message.opt.uri_query = request.query
    if request.content_format is not None:
        message.opt.content_format = request.content_format
    if request.accept is not None:
        message.opt.accept = request.accept
    if request.observe:
        message.opt.observe = 0
    for option in request.options:
        if option.number == OptionNumber.URI_HOST:
            message.opt.delete_option(OptionNumber.URI_HOST)
        number = OptionNumber(option.number)
        message.opt.add_option(number.create_option(decode=option.value))
    return message


def _hostinfo(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- from CoAP --------------------------------------------------------------------------

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


def _message_fields(message: aiocoap.Message) -> dict[str, JsonValue]:
    code = message.code
    content_format_option = message.opt.content_format
    content_format = None if content_format_option is None else int(content_format_option)
    payload, encoding = decode_payload(bytes(message.payload), content_format)
    return {
        "ok": int(code.class_) == 2,
        "code": str(code.dotted),
        "code_name": str(code.name_printable),
        "content_format": None if content_format is None else content_format_name(content_format),
        "options": options_to_json(message),
        "payload": payload,
        "payload_encoding": encoding.value,
    }


def response_to_json(
    request_id: str, message: aiocoap.Message, rtt_ms: float, observe_seq: int | None = None
) -> dict[str, JsonValue]:
    """The response object for a CoAP response (or one observe notification)."""
    answer: dict[str, JsonValue] = {"id": request_id, **_message_fields(message)}
    if observe_seq is not None:
        answer["observe"] = observe_seq
    answer["rtt_ms"] = round(rtt_ms, 1)
    return answer


def unsolicited_to_json(message: aiocoap.Message, remote: str) -> dict[str, JsonValue]:
    """A CoAP message from `remote` that matched no request, for `<base>/unsolicited`."""
    body: dict[str, JsonValue] = {
        "remote": remote,
        "type": str(message.mtype.name),
        "mid": message.mid,
        "token": bytes(message.token).hex(),
        **_message_fields(message),
    }
    if message.opt.observe is not None:
        body["observe"] = message.opt.observe
    return body


def error_to_json(request_id: str | None, exc: BaseException) -> dict[str, JsonValue]:
    """The error object; exceptions that are not BridgeErrors are `internal`, unexplained."""
    if isinstance(exc, BridgeError):
        kind = exc.kind
        message = str(exc) or kind.replace("_", " ")
        if isinstance(exc, ModemError) and exc.text and exc.text not in message:
            message = f"{message}: {exc.text}"
    else:
        kind = "internal"
        message = "internal error in the bridge; see its log"
    return {"id": request_id, "ok": False, "error": {"kind": kind, "message": message}}
