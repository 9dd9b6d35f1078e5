"""The 512-byte rules and remote parsing, without I/O."""

from __future__ import annotations

import pytest
from aiocoap import GET, POST, PUT, Message
from hypothesis import given
from hypothesis import strategies as st

from bridge.coap.limits import ModemLimits, add_early_block2, check_request_fits, first_datagram
from bridge.coap.remote import ModemRemote, remote_of
from bridge.errors import DatagramTooLarge
from tests.coap.conftest import Stack
from tests.fixtures.coap_servers import AiocoapServer

L610_LIMITS = ModemLimits(max_datagram=512, block_size_exp=4)


def test_early_block2_added_to_plain_request() -> None:
    message = Message(code=GET, uri="coap://h/x")
    add_early_block2(message, 4)
    assert tuple(message.opt.block2) == (0, False, 4)


def test_early_block2_left_alone_on_non_final_block1_and_when_present() -> None:
    non_final = Message(code=PUT, uri="coap://h/x", block1=(0, True, 4))
    explicit = Message(code=GET, uri="coap://h/x", block2=(3, False, 2))
    final = Message(code=PUT, uri="coap://h/x", block1=(7, False, 4))

    for message in (non_final, explicit, final):
        add_early_block2(message, 4)

    assert non_final.opt.block2 is None
    assert tuple(explicit.opt.block2) == (3, False, 2)
    assert tuple(final.opt.block2) == (0, False, 4)


def test_first_datagram_of_large_payload_is_first_block_with_size1() -> None:
    probe = first_datagram(Message(code=POST, uri="coap://h/x", payload=b"z" * 1000), L610_LIMITS)
    assert len(probe.payload) == 256
    assert tuple(probe.opt.block1) == (0, True, 4)
    assert probe.opt.size1 == 1000


@given(path_length=st.integers(0, 700), payload_length=st.integers(0, 1500))
def test_request_either_fits_in_512_or_is_refused(path_length: int, payload_length: int) -> None:
    message = Message(
        code=PUT, uri="coap://h/" + "a" * path_length, payload=b"\x01" * payload_length
    )
    size = len(first_datagram(message, L610_LIMITS).encode())
    if size <= 512:
        check_request_fits(message, "h:5683", L610_LIMITS)
    else:
        with pytest.raises(DatagramTooLarge):
            check_request_fits(message, "h:5683", L610_LIMITS)


def test_remote_keeps_host_names_unresolved() -> None:
    assert remote_of(Message(code=GET, uri="coap://meters.example:5684/x"), 4) == ModemRemote(
        "meters.example", 5684, 4
    )
    assert remote_of(Message(code=GET, uri="coap://10.1.2.3/x"), 4) == ModemRemote(
        "10.1.2.3", 5683, 4
    )
    assert remote_of(Message(code=GET, uri="coaps://10.1.2.3/x"), 4) is None


def test_remote_equality_and_uri() -> None:
    remote = ModemRemote("h", 5683, 4)
    assert remote == ModemRemote("h", 5683, 4)
    assert hash(remote) == hash(ModemRemote("h", 5683, 4))
    assert remote != ModemRemote("h", 5684, 4)
    assert remote.uri_base == "coap://h"
    assert ModemRemote("h", 99, 4).uri_base == "coap://h:99"


async def test_host_name_goes_to_the_modem_as_a_name(
    stack: Stack, aiocoap_server: AiocoapServer
) -> None:
    response = await stack.coap.request(
        Message(code=GET, uri=f"coap://localhost:{aiocoap_server.port}/"), timeout=5
    )

    assert response.code.is_successful()
    assert response.remote == ModemRemote("localhost", aiocoap_server.port, 4)
