"""Request mapping: MQTT request JSON -> CoAP exchange -> answer JSON (mqtt-api.md).

`CoapRequests` is the `RequestHandler` the MQTT front serves; the rest is pure:
`parse` (request JSON), `uri`, `options`, `codecs` (payloads), `request` (the CoAP
message) and `response` (the answer objects).
"""

from bridge.mapping.handler import CoapRequests
from bridge.mapping.options import CoapOption, options_to_json
from bridge.mapping.parse import (
    MAX_ID_LENGTH,
    REQUEST_FIELDS,
    MalformedRequest,
    PlaintextRefused,
    RequestRejected,
    TargetNotAllowed,
    max_request_bytes,
    parse_request,
)
from bridge.mapping.request import METHODS, CancelRequest, ParsedRequest, to_coap_message
from bridge.mapping.response import error_to_json, response_to_json, unsolicited_to_json

__all__ = [
    "MAX_ID_LENGTH",
    "METHODS",
    "REQUEST_FIELDS",
    "CancelRequest",
    "CoapOption",
    "CoapRequests",
    "MalformedRequest",
    "ParsedRequest",
    "PlaintextRefused",
    "RequestRejected",
    "TargetNotAllowed",
    "error_to_json",
    "max_request_bytes",
    "options_to_json",
    "parse_request",
    "response_to_json",
    "to_coap_message",
    "unsolicited_to_json",
]
