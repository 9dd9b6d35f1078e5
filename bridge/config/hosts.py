"""CoAP target host names as the config stores and the request mapping compares them."""

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
