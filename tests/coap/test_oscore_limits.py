"""OSCORE's share of the 512-byte datagram, the inner block size, and OSCORE failures as
the bridge's errors, without I/O."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiocoap import FETCH, GET, PUT, UNAUTHORIZED, Message, oscore
from aiocoap import error as coap_error
from aiocoap.numbers.types import CON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.coap.limits import ModemLimits, add_early_block2, first_datagram
from bridge.coap.oscore import (
    OscoreRemote,
    SecurityContexts,
    protection_overhead,
    security_error,
)
from bridge.coap.remote import ModemRemote
from bridge.errors import SecurityError
from bridge.ops.logs import redact
from tests.fixtures.oscore_server import (
    CLIENT_ID_HEX,
    MASTER_SALT_HEX,
    MASTER_SECRET_HEX,
    SERVER_ID_HEX,
    write_context,
)

# aiocoap's largest sequence number: the longest partial IV (5 bytes).
_LAST_SEQUENCE_NUMBER = 2**40 - 2

L610_LIMITS = ModemLimits(max_datagram=512, block_size_exp=4)


@pytest.fixture
def context() -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="oscore-") as workdir:
        directory = write_context(
            Path(workdir) / "client",
            sender_id_hex=CLIENT_ID_HEX,
            recipient_id_hex=SERVER_ID_HEX,
            secret_hex=MASTER_SECRET_HEX,
        )
        with SecurityContexts.load({"secure": str(directory)}) as contexts:
            yield contexts.context("secure")


def _protected_size(context: Any, message: Any) -> int:
    # Reserved already, so protecting writes no sequence.json.
    context.sender_sequence_number = _LAST_SEQUENCE_NUMBER
    context.sequence_number_persisted = _LAST_SEQUENCE_NUMBER + 1
    probe = first_datagram(message, L610_LIMITS)
    protected, _ = context.protect(probe)
    protected.mid, protected.token, protected.mtype = 0, b"\xff" * 8, CON
    return len(protected.encode())


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(st.text(min_size=0, max_size=40), max_size=6),
    query=st.lists(st.text(min_size=1, max_size=20), max_size=3),
    payload_length=st.integers(0, 1200),
    observe=st.booleans(),
    host=st.sampled_from([None, "meters.example", "x" * 200]),
)
def test_overhead_bounds_what_protection_adds(
    context: Any,
    path: list[str],
    query: list[str],
    payload_length: int,
    observe: bool,
    host: str | None,
) -> None:
    message = Message(code=FETCH if observe else PUT, payload=b"\x01" * payload_length)
    message.opt.uri_path = path
    message.opt.uri_query = query
    if host is not None:
        message.opt.uri_host = host
    if observe:
        message.opt.observe = 0
    plain = len(first_datagram(message, L610_LIMITS).encode())

    assert _protected_size(context, message) <= plain + protection_overhead(context)


def test_inner_blocks_are_256_bytes_and_early_block2_is_inner_only(context: Any) -> None:
    remote = OscoreRemote(context, ModemRemote("127.0.0.1", 5683, 4))
    inner = Message(code=GET, uri="coap://127.0.0.1/x")
    add_early_block2(inner, 4)
    outer, _ = context.protect(inner)
    add_early_block2(outer, 4)

    assert remote.maximum_block_size_exp == 4
    assert remote.maximum_payload_size == 256
    assert tuple(inner.opt.block2) == (0, False, 4)
    assert outer.opt.block2 is None


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (oscore.ProtectionInvalid("Tag invalid"), "failed OSCORE verification (Tag invalid)"),
        (oscore.ReplayError("Sequence number was reused"), "was refused as a replay"),
        (oscore.ContextUnavailable("exhausted"), "cannot protect more requests"),
        (
            oscore.NotAProtectedMessage(
                "No Object-Security option present",
                Message(code=UNAUTHORIZED, payload=b"Security context not found"),
            ),
            '4.01 Unauthorized ("Security context not found") without OSCORE protection',
        ),
    ],
)
def test_oscore_failures_are_security_errors_naming_the_alias(
    exception: Exception, expected: str
) -> None:
    error = security_error(exception, "meters", "10.0.0.5:5683")

    assert isinstance(error, SecurityError)
    assert error.kind == "security"
    assert "meters" in str(error)
    assert expected in str(error)


def test_other_failures_are_not_security_errors() -> None:
    assert security_error(coap_error.ConRetransmitsExceeded("gone"), "meters", "h:1") is None


def test_key_material_of_a_loaded_context_is_redacted_from_logs(tmp_path: Path) -> None:
    directory = tmp_path / "split"
    directory.mkdir(mode=0o700)
    # The secret in secret.json, the rest in settings.json: both are read.
    (directory / "settings.json").write_text(
        json.dumps({"sender-id_hex": "", "recipient-id_hex": "01", "salt_hex": MASTER_SALT_HEX})
    )
    (directory / "secret.json").write_text(json.dumps({"secret_ascii": "Open-sesame-0042"}))
    with SecurityContexts.load({"split": str(directory)}) as contexts:
        context = contexts.context("split")
        line = " ".join(
            [
                "Open-sesame-0042",
                b"Open-sesame-0042".hex(),
                MASTER_SALT_HEX,
                MASTER_SALT_HEX.upper(),
                context.sender_key.hex(),
                context.recipient_key.hex(),
                context.common_iv.hex(),
            ]
        )

    assert redact(line) == " ".join(["***"] * 7)
