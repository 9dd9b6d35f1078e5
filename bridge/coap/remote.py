"""The CoAP remote as aiocoap sees it: a (host, port) reached through a modem instance.

aiocoap routes, matches responses and keys block-wise state by the message's `remote`
(an `EndpointAddress`). Ours is just the server's host and port as written in the
request URI: the host is handed to the modem as it is (the L610 resolves names
itself), so nothing here ever resolves it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiocoap import error as coap_error
from aiocoap import interfaces
from aiocoap.numbers import COAP_PORT
from aiocoap.util import hostportjoin, hostportsplit


class ModemRemote(interfaces.EndpointAddress):
    """A CoAP server at (host, port), reached through one of the modem's instances.

    Equal and hash-equal for the same (host, port), as aiocoap's token and block-wise
    layers require of addresses of one "context" (RFC 7252 §9.1.2 does not apply: no DTLS).
    """

    is_multicast: ClassVar[bool] = False
    is_multicast_locally: ClassVar[bool] = False
    scheme: ClassVar[str] = "coap"

    def __init__(self, host: str, port: int, block_size_exp: int) -> None:
        self.host = host
        self.port = port
        self._block_size_exp = block_size_exp
        self._hash = hash((ModemRemote, host, port))

    @property
    def maximum_block_size_exp(self) -> int:
        """The driver's block size: aiocoap's BlockwiseRequest reads it for Block1 and
        for the Block2 follow-ups."""
        return self._block_size_exp

    @property
    def maximum_payload_size(self) -> int:
        # Only consulted for BERT (szx 7), which we never negotiate; kept consistent anyway.
        return 1 << (self._block_size_exp + 4)

    def __eq__(self, other: object) -> bool:
        # Compared on every token/exchange lookup: the common case is the same object.
        if other is self:
            return True
        return (
            isinstance(other, ModemRemote) and self.port == other.port and self.host == other.host
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<ModemRemote {self.hostinfo}>"

    @property
    def hostinfo(self) -> str:
        return str(hostportjoin(self.host, None if self.port == COAP_PORT else self.port))

    @property
    def label(self) -> str:
        """`host:port` always with the port, for log lines and error messages."""
        return str(hostportjoin(self.host, self.port))

    @property
    def hostinfo_local(self) -> str:
        raise coap_error.AnonymousHost("the modem does not tell its local address")

    @property
    def uri_base(self) -> str:
        return "coap://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        raise coap_error.AnonymousHost("the modem does not tell its local address")

    @property
    def blockwise_key(self) -> tuple[str, int]:
        return (self.host, self.port)


# Each request is looked up twice (ModemCoap, then aiocoap's determine_remote) and names
# one of a few servers: splitting its "host:port" (urllib) and building the remote cost
# more than the rest of routing it. Remotes compare by value, so sharing one is safe.
# Bounded: a bridge that talks to more servers than this starts over.
_REMOTES_BY_HOSTINFO: dict[tuple[str, int], ModemRemote] = {}
_MAX_KNOWN_HOSTINFOS = 1024


def remote_of(message: Any, block_size_exp: int) -> ModemRemote | None:
    """The remote a request message is addressed to, or None if it is not plain `coap`.

    Mirrors aiocoap's own UDP transports: the URI authority (`unresolved_remote`) wins,
    else the Uri-Host/Uri-Port options.
    """
    remote = message.remote
    if isinstance(remote, ModemRemote):
        return remote
    if message.requested_scheme not in ("coap", None):
        return None
    hostinfo = getattr(remote, "hostinfo", None)
    if hostinfo:
        key = (hostinfo, block_size_exp)
        known = _REMOTES_BY_HOSTINFO.get(key)
        if known is not None:
            return known
        host, port = hostportsplit(hostinfo)
        known = ModemRemote(str(host), int(port or COAP_PORT), block_size_exp)
        if len(_REMOTES_BY_HOSTINFO) >= _MAX_KNOWN_HOSTINFOS:
            _REMOTES_BY_HOSTINFO.clear()
        _REMOTES_BY_HOSTINFO[key] = known
        return known
    if message.opt.uri_host:
        host, port = message.opt.uri_host, message.opt.uri_port
    else:
        raise ValueError("request names no host: neither a URI authority nor Uri-Host")
    return ModemRemote(str(host), int(port or COAP_PORT), block_size_exp)
