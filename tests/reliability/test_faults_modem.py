"""Faults on the modem side, injected through the simulator's control channel while the
daemon serves requests: reboots, an unplugged modem, line noise, a lost final result.

The contract (README, "Modem trouble"): a GET caught by a modem fault is retransmitted
or sent again once the modem is back, so every request whose timeout exceeds the
recovery time is answered exactly once with 2.05, and the daemon serves again. Each test
first waits for the fault to be able to hit a request (the CoAP server has seen some of
the batch, datagrams of both block-wise transfers have gone out), injects it while the
others are still unanswered, and checks afterwards that it landed (the simulator's
reboot and unplug counts, the daemon's resets, AT timeouts and malformed URCs).

Towards the CoAP server: after a modem reset or unplug, the CoAP layer retransmits each
pending CON on a fresh modem instance (bridge/coap/transport.py, `modem_reset`). The
fresh instance has a new UDP source port, so a server that had already received the
first copy cannot recognise the retransmission (RFC 7252 §4.5 deduplicates per
endpoint) and executes the request a second time. That is at most twice per request,
only for requests in flight at the reset, and harmless for the GETs used here; a POST
or PATCH in that state is answered `modem_unavailable` (README).
"""

from __future__ import annotations

import base64

import pytest

from tests.fixtures.coap_resources import LARGE_PAYLOAD as LARGE_BODY
from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.wait import eventually
from tests.reliability.conftest import (
    LedgerFactory,
    assert_serving,
    server_hits,
    wait_health,
    wait_server_saw,
)

pytestmark = pytest.mark.timeout(90)

LATENCY_MS = 150
# As long as the issue asks: the engine's reconnect backoff reaches its cap meanwhile.
UNPLUG_SECONDS = 10.0
# The port comes back after UNPLUG_SECONDS; the engine's next reopen attempt is at most
# its backoff cap (bridge/at/engine.py, `reconnect_max`, 5 s) later, then bring-up runs:
# a request timeout of UNPLUG_SECONDS + this exceeds the recovery time.
UNPLUG_RECOVERY = 10.0
# Published health is read back within this (health_interval 1 s in these tests).
HEALTH_OVERRIDES = {"health_interval": 1}


def test_modem_reboot_mid_exchange(bridge_stack: BridgeStackFactory, ledger: LedgerFactory) -> None:
    stack = bridge_stack(latency_ms=LATENCY_MS, overrides=HEALTH_OVERRIDES)
    book = ledger(stack)
    ids = book.count_requests("reboot", 12, timeout=10)
    # The server has answered two: their responses are on the simulated link for another
    # LATENCY_MS when the modem reboots, so the reboot catches them in flight.
    wait_server_saw(stack, ids, 2)
    stack.sim.reboot()
    caught = book.unanswered(ids)
    assert caught, "every request was answered before the reboot"

    book.wait_answered(ids, timeout=25)
    book.one_answer_each(ids)
    assert book.kinds(ids) == dict.fromkeys(ids, "ok"), book.kinds(ids)
    hits = server_hits(stack, ids)
    # Every request reached the server; twice when the reset caught its exchange.
    assert set(hits.values()) <= {1, 2}, hits
    assert 2 in hits.values(), f"no exchange was caught by the reboot: {hits}"
    assert stack.sim.stats()["reboots"] == 1
    wait_health(stack, lambda h: h["modem"]["resets"] == 1, "the daemon counted one reset")
    assert_serving(stack, book)


def test_modem_reboot_mid_blockwise_transfer(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(latency_ms=100, overrides=HEALTH_OVERRIDES)
    book = ledger(stack)
    transfers = ["bw-get", "bw-put"]
    sent_before = stack.sim.stats()["datagrams_out"]
    # 3000 bytes each way: a dozen Block2 (GET) and Block1 (PUT) exchanges of 0.2 s.
    book.request("bw-get", "coap://lab/large", timeout=20)
    book.request(
        "bw-put",
        "coap://lab/store",
        method="PUT",
        payload=base64.b64encode(LARGE_BODY).decode(),
        payload_encoding="base64",
        content_format="application/octet-stream",
        timeout=20,
    )
    # Six blocks out of about 24: both transfers are under way and neither is done.
    eventually(
        lambda: stack.sim.stats()["datagrams_out"] - sent_before >= 6,
        10,
        "six blocks of the transfers went out",
    )
    stack.sim.reboot()
    assert book.unanswered(transfers) == transfers, "a transfer finished before the reboot"
    assert stack.coap.store.content != LARGE_BODY

    book.wait_answered(transfers, timeout=30)
    book.one_answer_each(transfers)
    assert book.kinds(transfers) == dict.fromkeys(transfers, "ok"), book.kinds(transfers)
    # Whole bodies, each way (a Block1 upload cut by the reset starts again from block 0).
    assert base64.b64decode(book.single("bw-get")["payload"]) == LARGE_BODY
    assert stack.coap.store.content == LARGE_BODY
    assert stack.sim.stats()["reboots"] == 1
    wait_health(stack, lambda h: h["modem"]["resets"] == 1, "the daemon counted one reset")
    assert_serving(stack, book)
    # And a block-wise transfer works again on the rebooted modem.
    book.request("bw-again", "coap://lab/large", timeout=15)
    book.wait_answered(["bw-again"], timeout=20)
    again = book.single("bw-again")
    assert again["ok"]
    assert base64.b64decode(again["payload"]) == LARGE_BODY


def test_modem_unplugged_and_back(bridge_stack: BridgeStackFactory, ledger: LedgerFactory) -> None:
    stack = bridge_stack(latency_ms=LATENCY_MS, overrides=HEALTH_OVERRIDES)
    book = ledger(stack)
    timeout = UNPLUG_SECONDS + UNPLUG_RECOVERY
    in_flight = book.count_requests("unplug", 8, timeout=timeout)
    wait_server_saw(stack, in_flight, 2)
    stack.sim.unplug(UNPLUG_SECONDS)
    assert book.unanswered(in_flight), "every request was answered before the unplug"
    # Published once the daemon knows the port is gone: their datagrams cannot go out
    # and wait for the modem (README: sent as soon as it is back).
    wait_health(stack, lambda h: not h["modem"]["ready"], "the daemon saw the port gone")
    during = book.count_requests("unplugged", 4, timeout=timeout)

    book.wait_answered(in_flight + during, timeout=timeout + 10)
    book.one_answer_each(in_flight + during)
    kinds = book.kinds(in_flight + during)
    assert kinds == dict.fromkeys(in_flight + during, "ok"), kinds
    assert set(server_hits(stack, in_flight).values()) <= {1, 2}, server_hits(stack, in_flight)
    assert set(server_hits(stack, during).values()) == {1}, server_hits(stack, during)
    assert stack.sim.stats()["unplugs"] == 1
    wait_health(stack, lambda h: h["modem"]["resets"] >= 1, "the daemon counted the port loss")
    assert_serving(stack, book)


def test_line_noise_and_overlong_lines_do_not_disturb_requests(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(latency_ms=LATENCY_MS, overrides=HEALTH_OVERRIDES)
    book = ledger(stack)
    ids = book.count_requests("noise", 16, timeout=10)
    wait_server_saw(stack, ids, 1)
    # Binary noise, a 100 kB line, malformed and unknown-id +GTCOAPDATA, split over many
    # small writes while requests are on the line. No final result codes and no boot
    # lines: those would be a different fault (a reply that is not one, a reboot).
    noise = (
        b"\x00\xff\xfe\x80noise\r\n"
        + b"Q" * 100_000
        + b"\r\n+GTCOAPDATA: 1,2,ABC\r\n+GTCOAPDATA: 1,3,ABCD\r\n"
        + b"+GTCOAPDATA: 4,2,WXYZ\r\n+GTCOAPDATA: 9,4,DEADBEEF\r\n\x1b[2J\r\n"
    )
    stack.sim.garbage(noise, chunk_size=4096, chunk_delay=0.002)
    assert book.unanswered(ids), "every request was answered before the noise"

    book.wait_answered(ids, timeout=20)
    book.one_answer_each(ids)
    assert book.kinds(ids) == dict.fromkeys(ids, "ok"), book.kinds(ids)
    assert set(server_hits(stack, ids).values()) == {1}
    health = wait_health(
        stack, lambda h: h["modem"]["malformed_urcs"] >= 3, "the daemon dropped the bad URCs"
    )
    assert health["modem"]["resets"] == 0
    assert_serving(stack, book)


def test_swallowed_ok(bridge_stack: BridgeStackFactory, ledger: LedgerFactory) -> None:
    stack = bridge_stack(latency_ms=LATENCY_MS, overrides=HEALTH_OVERRIDES)
    book = ledger(stack)
    # The daemon is idle: the next final result is that of a command serving the batch.
    stack.sim.swallow_final()
    ids = book.count_requests("swallow", 8, timeout=10)

    book.wait_answered(ids, timeout=20)
    book.one_answer_each(ids)
    # The engine gives up on the command after command_timeout (2 s), resynchronises the
    # port and goes on; the requests' timeouts (10 s) outlast that.
    assert book.kinds(ids) == dict.fromkeys(ids, "ok"), book.kinds(ids)
    assert set(server_hits(stack, ids).values()) == {1}, server_hits(stack, ids)
    # The fault landed on a command of the CoAP layer, not on an idle probe.
    log = stack.wait_log("no final result within")
    assert "AT command 'AT+GTCOAP" in log, log[-3000:]
    health = wait_health(stack, lambda h: h["modem"]["at_timeouts"] == 1, "one AT timeout")
    assert health["modem"]["resets"] == 0
    assert_serving(stack, book)
