"""Host names and addresses as the config stores them: CoAP targets, listen addresses."""

from __future__ import annotations

import ipaddress
import re

_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def normalize_host(text: str) -> str:
    """A CoAP target host as compared and stored: lowercase name, or canonical IP.

    IPv6 literals may be given with or without brackets and are stored without.
    Raises ValueError for anything that is neither.
    """
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(f"{text!r}: IPv6 zone ids are not supported")
        return str(address)
    name = candidate.lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is not a host name or IP address")
    return name


def listen_address(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); port 0 picks a free one. ValueError."""
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f'{listen!r} must be host:port, such as "127.0.0.1:9108"')
    return host, int(port_text)
