"""The answer objects of the MQTT contract (mqtt-api.md), built from CoAP messages. Pure.

`response_to_json` answers a request (or one observe notification),
`unsolicited_to_json` describes a message that matched no request, and `error_to_json`
turns an exception into the error object: a `BridgeError` gives its kind and message,
anything else is `internal` and explains nothing (the log has the traceback).
"""

from __future__ import annotations

import functools

import aiocoap
import aiocoap.numbers.codes

from bridge.errors import BridgeError, ModemError
from bridge.mapping.codecs import JsonValue, content_format_name, decode_payload
from bridge.mapping.options import options_to_json


@functools.lru_cache(maxsize=64)
def _code_fields(code: aiocoap.numbers.codes.Code) -> tuple[bool, str, str, bool]:
    """ok, code, code_name and whether the payload is a diagnostic: cached, as aiocoap
    formats the code's names anew on every access and a server answers few codes."""
    return (
        int(code.class_) == 2,
        str(code.dotted),
        str(code.name_printable),
        int(code.class_) in (4, 5),
    )


def _message_fields(message: aiocoap.Message) -> dict[str, JsonValue]:
    ok, dotted, name, diagnostic = _code_fields(message.code)
    content_format_option = message.opt.content_format
    content_format = None if content_format_option is None else int(content_format_option)
    payload, encoding = decode_payload(
        bytes(message.payload), content_format, diagnostic=diagnostic
    )
    return {
        "ok": ok,
        "code": dotted,
        "code_name": name,
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
