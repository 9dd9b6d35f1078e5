"""The modem's 512-byte datagram limit, applied to CoAP messages (sans-IO).

The L610 carries at most 512 bytes per datagram in either direction. Block-wise
transfer (RFC 7959) with 256-byte blocks keeps payloads small; what remains is making
sure (a) servers are told that size up front and (b) a message whose header, token and
options alone are too big is refused before anything is sent.
"""

from __future__ import annotations

from typing import Any

from aiocoap.numbers.types import CON

from bridge.coap.remote import BLOCK_SIZE, BLOCK_SIZE_EXP
from bridge.errors import DatagramTooLarge
from bridge.modem.codec import MAX_DATAGRAM

# aiocoap's TokenManager hands out tokens of up to 8 bytes.
_MAX_TOKEN = b"\xff" * 8


def add_early_block2(message: Any) -> None:
    """Ask for 256-byte response blocks in a request that does not say already.

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
    message.opt.block2 = (0, False, BLOCK_SIZE_EXP)


def first_datagram(message: Any) -> Any:
    """The largest first datagram aiocoap will build for this request, as a Message.

    Same token budget, early Block2, and the first Block1 block (plus Size1) when the
    payload will be split, as aiocoap's BlockwiseRequest does for remotes at szx 4.
    """
    split: dict[str, Any] = {}
    if len(message.payload) > BLOCK_SIZE:
        split = {
            "payload": message.payload[:BLOCK_SIZE],
            "block1": (0, True, BLOCK_SIZE_EXP),
            "size1": len(message.payload),
        }
    probe = message.copy(mid=0, token=_MAX_TOKEN, mtype=CON, **split)
    add_early_block2(probe)
    return probe


# What the first datagram can add to a small request's encoded options: the header,
# the longest token, and an early Block2 option (1 header byte, up to 2 extended-delta
# bytes, a 1-byte value; the delta of any later option only shrinks).
_HEADER_AND_TOKEN = 4 + len(_MAX_TOKEN)
_EARLY_BLOCK2_MAX = 4


def check_request_fits(message: Any, target: str, *, overhead: int = 0) -> None:
    """Raise DatagramTooLarge if the request's first datagram would be over 512 bytes.

    `overhead`: what protection adds to the datagram (see `bridge.coap.oscore`).
    """
    payload = len(message.payload)
    if payload <= BLOCK_SIZE:
        # Common case, on every request: bound the size without copying the message.
        bound = _HEADER_AND_TOKEN + len(message.opt.encode()) + _EARLY_BLOCK2_MAX + overhead
        if bound + (1 + payload if payload else 0) <= MAX_DATAGRAM:
            return
    size = len(first_datagram(message).encode()) + overhead
    if size > MAX_DATAGRAM:
        protection = f", {overhead} bytes of OSCORE" if overhead else ""
        raise DatagramTooLarge(
            f"request to {target} needs a {size}-byte datagram (header, token, options and "
            f"a {BLOCK_SIZE}-byte block{protection}); the modem carries at most "
            f"{MAX_DATAGRAM} bytes: shorten the URI path/query or the options"
        )


def check_datagram_fits(datagram: bytes, target: str) -> None:
    if len(datagram) > MAX_DATAGRAM:
        raise DatagramTooLarge(
            f"CoAP message to {target} encodes to {len(datagram)} bytes; the modem "
            f"carries at most {MAX_DATAGRAM}"
        )
