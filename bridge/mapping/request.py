"""A validated request (what `parse_request` returns) and the CoAP message it becomes.

`to_coap_message` builds the aiocoap request without resolving names: the modem
resolves them in AT+GTCOAPOPEN. Uri-Host is sent for host names only (RFC 7252 §6.4);
Uri-Port never (it equals the destination port).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import aiocoap
from aiocoap.message import UndecidedRemote
from aiocoap.numbers import OptionNumber
from aiocoap.numbers.codes import Code

from bridge.mapping.options import CoapOption

METHODS: Final = ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH")


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
    oscore: str | None = None  # the server alias whose OSCORE context protects it
    modem: str | None = None  # the modem named by the request or its server alias
    retry: bool = False  # a POST/PATCH may be sent again on another modem after a failover

    @property
    def target(self) -> str:
        """host:port as messages show it, and as the CoAP remote is written."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CancelRequest:
    """`{"id": ..., "cancel": true}`: stop the observation started with that id."""

    id: str
    response_topic: str | None


def _is_ip_literal(host: str) -> bool:
    return ":" in host or all(part.isdigit() for part in host.split("."))


def to_coap_message(request: ParsedRequest) -> aiocoap.Message:
    """The aiocoap request for `request`; its remote is an `UndecidedRemote` host:port."""
    tuning = aiocoap.Reliable() if request.confirmable else aiocoap.Unreliable()
    message = aiocoap.Message(
        code=getattr(Code, request.method), payload=request.payload, transport_tuning=tuning
    )
    message.remote = UndecidedRemote("coap", request.target)
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
