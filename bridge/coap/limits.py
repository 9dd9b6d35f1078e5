"""The modem driver's datagram limit, applied to CoAP messages (sans-IO).

A modem carries datagrams up to its driver's `max_datagram` (512 bytes for the L610).
Block-wise transfer (RFC 7959) in the driver's block size keeps payloads small; what
remains is making sure (a) servers are told that size up front and (b) a message whose
header, token and options alone are too big is refused before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiocoap.numbers.types import CON

from bridge.errors import DatagramTooLarge

# aiocoap's TokenManager hands out tokens of up to 8 bytes.
_MAX_TOKEN = b"\xff" * 8


@dataclass(frozen=True, slots=True)
class ModemLimits:
    """A modem's limits as its driver states them: largest datagram, block size (SZX)."""

    max_datagram: int
    block_size_exp: int

    @property
    def block_size(self) -> int:
        return 1 << (self.block_size_exp + 4)


def add_early_block2(message: Any, block_size_exp: int) -> None:
    """Ask for response blocks of the remote's size in a request that does not say already.

    RFC 7959 §2.4: a client may send Block2 with block number 0 in its initial request
    to propose a block size, so a server never answers with a datagram the modem cannot
    carry. Non-final Block1 blocks are left alone: the response to them carries no
    body, and §2.3 reserves Block2 for the request that completes the body. An
    OSCORE-protected message gets none: its Block2 is inner, added before protection.
    """
    if not message.code.is_request() or message.opt.block2 is not None:
        return
    if message.opt.oscore is not None:
        return
    block1 = message.opt.block1
    if block1 is not None and block1.more:
        return
    message.opt.block2 = (0, False, block_size_exp)


def first_datagram(message: Any, limits: ModemLimits) -> Any:
    """The largest first datagram aiocoap will build for this request, as a Message.

    Same token budget, early Block2, and the first Block1 block (plus Size1) when the
    payload will be split, as aiocoap's BlockwiseRequest does for the remote's szx.
    """
    split: dict[str, Any] = {}
    block_size = limits.block_size
    if len(message.payload) > block_size:
        split = {
            "payload": message.payload[:block_size],
            "block1": (0, True, limits.block_size_exp),
            "size1": len(message.payload),
        }
    probe = message.copy(mid=0, token=_MAX_TOKEN, mtype=CON, **split)
    add_early_block2(probe, limits.block_size_exp)
    return probe


# What the first datagram can add to a small request's encoded options: the header,
# the longest token, and an early Block2 option (1 header byte, up to 2 extended-delta
# bytes, a 1-byte value; the delta of any later option only shrinks).
_HEADER_AND_TOKEN = 4 + len(_MAX_TOKEN)
_EARLY_BLOCK2_MAX = 4


def check_request_fits(
    message: Any, target: str, limits: ModemLimits, *, overhead: int = 0
) -> None:
    """Raise DatagramTooLarge if the request's first datagram would be over the limit.

    `overhead`: what protection adds to the datagram (see `bridge.coap.oscore`).
    """
    payload = len(message.payload)
    limit = limits.max_datagram
    if payload <= limits.block_size:
        # Common case, on every request: bound the size without copying the message.
        bound = _HEADER_AND_TOKEN + len(message.opt.encode()) + _EARLY_BLOCK2_MAX + overhead
        if bound + (1 + payload if payload else 0) <= limit:
            return
    size = len(first_datagram(message, limits).encode()) + overhead
    if size > limit:
        protection = f", {overhead} bytes of OSCORE" if overhead else ""
        raise DatagramTooLarge(
            f"request to {target} needs a {size}-byte datagram (header, token, options and "
            f"a {limits.block_size}-byte block{protection}); the modem carries at most "
            f"{limit} bytes: shorten the URI path/query or the options"
        )


def check_datagram_fits(datagram: bytes, target: str, limits: ModemLimits) -> None:
    if len(datagram) > limits.max_datagram:
        raise DatagramTooLarge(
            f"CoAP message to {target} encodes to {len(datagram)} bytes; the modem "
            f"carries at most {limits.max_datagram}"
        )
