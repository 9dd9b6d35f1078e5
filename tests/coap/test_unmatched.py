"""Responses that match no request reach the unmatched handler (for `<base>/unsolicited`)."""

from __future__ import annotations

from typing import Any

from aiocoap import CONTENT, GET, NON, Message

from tests.coap.conftest import Stack
from tests.fixtures.coap_servers import AiocoapServer
from tests.fixtures.modem import eventually


async def test_stray_response_is_handed_over_and_requests_still_match(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    unmatched: list[Any] = []
    stack.coap.set_unmatched_handler(unmatched.append)
    # A request opens the instance (coap_id 1) and must itself not count as unmatched.
    await stack.coap.request(Message(code=GET, uri=aiocoap_server.uri("/")), timeout=5)

    stray = Message(_mtype=NON, code=CONTENT, _mid=0x4242, _token=b"\xde\xad", payload=b"late")
    datagram = stray.encode()
    stack.sim.inject_raw(
        f"\r\n+GTCOAPDATA: 1,{len(datagram)},{datagram.hex().upper()}\r\n".encode()
    )

    await eventually(lambda: len(unmatched) == 1)
    assert unmatched[0].payload == b"late"
    assert unmatched[0].token == b"\xde\xad"
    assert stack.coap.stats().in_flight == 0
