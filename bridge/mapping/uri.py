"""The request `uri`: a coap:// URI as (host, port, path, query, alias), aliases resolved.

`parse_uri` raises ValueError with a message for the requester: only coap:// (no
DTLS on the modem), no user info, fragment, spaces, control characters or bad
percent-encoding; a server alias from `coap.servers` takes its host and port.
Results are memoized per `coap.servers` (requesters poll the same few URIs).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final, NamedTuple, cast

import aiocoap

from bridge.config import Settings, normalize_host

CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ParsedUri(NamedTuple):
    host: str  # normalized: lowercase name or IP literal without brackets
    port: int
    path: tuple[str, ...]  # decoded Uri-Path segments
    query: tuple[str, ...]  # decoded Uri-Query items
    alias: str | None  # the server alias the URI named, if it named one


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


def _parse_uri_uncached(uri: object, settings: Settings) -> ParsedUri:
    if not isinstance(uri, str) or not uri:
        raise ValueError("uri must be a non-empty string such as coap://host/path")
    # urlsplit silently drops tabs and newlines (WHATWG); refuse them instead.
    if CONTROL_CHARS.search(uri) or " " in uri:
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
    alias = host_text if server is not None else None
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
    return ParsedUri(host, port, path, query, alias)


class _UriMemo:
    """Parsed URIs seen lately, valid for the `coap.servers` they were parsed with.

    urllib's split plus the checks cost more than the rest of parsing a request. Only
    results are kept (a bad URI is refused afresh each time). A reload that changes
    `coap.servers` starts over, and so does passing `max_entries`.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._servers: object = None
        self._parsed: dict[str, ParsedUri] = {}

    def parse(self, uri: object, settings: Settings) -> ParsedUri:
        servers = settings.coap.servers
        if servers is not self._servers:
            self._servers = servers
            self._parsed.clear()
        if isinstance(uri, str):
            known = self._parsed.get(uri)
            if known is not None:
                return known
        parsed = _parse_uri_uncached(uri, settings)
        if len(self._parsed) >= self._max_entries:
            self._parsed.clear()
        self._parsed[cast(str, uri)] = parsed
        return parsed


_MEMO: Final = _UriMemo()


def parse_uri(uri: object, settings: Settings) -> ParsedUri:
    """(host, port, path, query, alias) of a request's coap:// URI. ValueError if bad."""
    return _MEMO.parse(uri, settings)
