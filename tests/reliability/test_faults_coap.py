"""Faults on the CoAP side and under load: a lossy link, a server that resets or never
answers, and a flood of requests far beyond `coap.max_in_flight`.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures.daemon import BridgeStackFactory
from tests.reliability.conftest import LedgerFactory, assert_serving, server_hits

pytestmark = pytest.mark.timeout(90)


def test_thirty_percent_datagram_loss(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(loss=0.3, seed=5, latency_ms=20)
    book = ledger(stack)
    # RFC 7252 timers (ACK_TIMEOUT 2-3 s, doubling): 12 s covers three tries, each
    # getting through both ways with probability 0.49, so about 1 in 8 exchanges runs
    # out of time.
    ids = book.count_requests("loss", 20, timeout=12)

    book.wait_answered(ids, timeout=25)
    book.one_answer_each(ids)
    kinds = book.kinds(ids)
    assert set(kinds.values()) <= {"ok", "timeout"}, kinds
    assert list(kinds.values()).count("ok") >= 12, kinds
    # A retransmitted CON carries the same message id on the same instance, so the
    # server's deduplication renders each request once at most.
    assert set(server_hits(stack, ids).values()) <= {0, 1}
    assert stack.sim.stats()["datagrams_lost"] > 0


def test_server_reset_and_server_silence(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack()
    book = ledger(stack)
    resets = [book.request(f"rst-{i}", f"coap://rst/x{i}") for i in range(3)]
    silent = [book.request(f"silent-{i}", f"coap://silent/x{i}", timeout=2) for i in range(3)]
    fine = book.count_requests("beside", 5)

    book.wait_answered(resets + silent + fine, timeout=15)
    book.one_answer_each(resets + silent + fine)
    assert set(book.kinds(resets).values()) == {"reset"}
    assert set(book.kinds(silent).values()) == {"timeout"}
    # The failing servers hold nobody else up.
    assert set(book.kinds(fine).values()) == {"ok"}
    message = book.single("silent-0")["error"]["message"]
    assert f"127.0.0.1:{stack.silent.port}" in message
    assert "2 s" in message
    # CON retransmissions did go out to the silent server before the timeout.
    assert stack.silent.received >= len(silent)
    assert_serving(stack, book)


def test_flood_of_ten_times_max_in_flight_is_all_served(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    max_in_flight = 4
    latency_ms = 100
    stack = bridge_stack(latency_ms=latency_ms, overrides={"coap.max_in_flight": max_in_flight})
    book = ledger(stack)
    count = 10 * max_in_flight
    began = time.monotonic()
    ids = book.count_requests("flood", count, timeout=20)

    book.wait_answered(ids, timeout=40)
    elapsed = time.monotonic() - began
    book.one_answer_each(ids)
    assert set(book.kinds(ids).values()) == {"ok"}, book.kinds(ids)
    assert set(server_hits(stack, ids).values()) == {1}
    # Back-pressure, not parallelism: with at most 4 exchanges of one round trip
    # (2 x 100 ms) at a time, 40 requests need at least 10 round trips.
    round_trip = 2 * latency_ms / 1000
    assert elapsed >= (count / max_in_flight) * round_trip * 0.9, elapsed
    assert_serving(stack, book)
