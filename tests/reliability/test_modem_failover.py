"""Two simulated modems behind one daemon: placement by load and by name, and failover.

A request goes to the ready modem with the least load unless it (or its server alias)
names one. When a modem goes down with requests in flight while the other is ready, an
idempotent request is sent again on the other one; a POST is answered
`modem_unavailable` and is never sent twice, unless it says `"retry": true`.
"""

from __future__ import annotations

import json

import pytest

from bridge.simulator import SimulatorControl
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory
from tests.fixtures.wait import eventually
from tests.reliability.conftest import Ledger, LedgerFactory, server_hits

pytestmark = pytest.mark.timeout(120)

UNPLUG_SECONDS = 10.0


def _datagrams_out(stack: BridgeStack) -> list[int]:
    return [sim.stats()["datagrams_out"] for sim in stack.sims]


def _carrier(stack: BridgeStack, before: list[int]) -> SimulatorControl:
    """The one simulator that sent a datagram since `before`."""
    grown = [
        sim
        for sim, now, then in zip(stack.sims, _datagrams_out(stack), before, strict=True)
        if now > then
    ]
    assert len(grown) == 1, f"datagrams out before {before}, now {_datagrams_out(stack)}"
    return grown[0]


def _all_ok(book: Ledger, ids: list[str]) -> None:
    kinds = book.kinds(ids)
    failed = {request_id: kind for request_id, kind in kinds.items() if kind != "ok"}
    assert not failed, f"{len(failed)} of {len(ids)} not ok: {dict(list(failed.items())[:5])}"
    assert {book.single(request_id)["code"] for request_id in ids} == {"2.05"}


def test_requests_spread_over_both_modems_and_may_name_one(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(modems=2, latency_ms=50)
    book = ledger(stack)
    ids = book.count_requests("spread", 60)
    book.wait_answered(ids, timeout=30)
    book.one_answer_each(ids)
    _all_ok(book, ids)
    spread = _datagrams_out(stack)
    assert min(spread) >= 10, f"datagrams out per modem: {spread}"

    pinned = book.count_requests("pinned", 10, modem="b")
    book.wait_answered(pinned, timeout=30)
    _all_ok(book, pinned)
    after = _datagrams_out(stack)
    assert after[0] == spread[0]
    assert after[1] == spread[1] + 10

    book.request("unknown", "coap://lab/hello", modem="z")
    book.wait_answered(["unknown"], timeout=10)
    error = book.single("unknown")["error"]
    assert error["kind"] == "invalid_request"
    assert "a, b" in error["message"]

    health = stack.health()
    assert [(m["name"], m["port"], m["ready"]) for m in health["modems"]] == [
        ("a", stack.pty_paths[0], True),
        ("b", stack.pty_paths[1], True),
    ]
    assert "modem" not in health  # the single-modem member is for one-modem configs
    assert "modem=a" in stack.daemon_log()
    assert "modem=b" in stack.daemon_log()


def test_a_server_alias_names_its_modem(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(modems=2, overrides={"coap.servers.lab.modem": "a"})
    book = ledger(stack)
    before = _datagrams_out(stack)
    ids = book.count_requests("alias", 20)
    book.wait_answered(ids, timeout=30)
    _all_ok(book, ids)
    after = _datagrams_out(stack)
    assert (after[0] - before[0], after[1] - before[1]) == (20, 0)


def test_gets_in_flight_on_an_unplugged_modem_go_to_the_other(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    # 300 ms each way and 16 in flight: the batch takes about 10 s, so requests are in
    # flight on both modems at the unplug however late this test gets to send it. (Not a
    # slow server: its separate responses go out one at a time per client endpoint, and
    # with one modem left that queue, not the bridge, would set the pace.)
    stack = bridge_stack(modems=2, latency_ms=300, overrides={"coap.max_in_flight": 16})
    book = ledger(stack)
    ids = book.count_requests("failover", 300, timeout=30)
    eventually(lambda: sum(bool(book.answers.get(i)) for i in ids) >= 60, 30, "60 answers")
    stack.sims[0].unplug(UNPLUG_SECONDS)

    book.wait_answered(ids, timeout=60)
    book.one_answer_each(ids)
    _all_ok(book, ids)
    assert stack.sims[0].stats()["unplugs"] == 1
    moved = stack.daemon_log().count("went down with a GET request in flight")
    assert moved >= 1, stack.daemon_log()[-6000:]
    assert set(server_hits(stack, ids).values()) <= {1, 2}


def _slow_post(book: Ledger, request_id: str, **fields: object) -> None:
    uri = f"coap://lab/count?id={request_id}&s=3"
    body = {"id": request_id, "method": "POST", "uri": uri, "timeout": 25, **fields}
    book.publish(json.dumps(body))


def test_a_post_caught_by_an_unplug_is_modem_unavailable_and_not_sent_again(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(modems=2, latency_ms=50)
    book = ledger(stack)
    before = _datagrams_out(stack)
    _slow_post(book, "post-1")
    eventually(lambda: stack.coap.hits("post-1") == 1, 10, "the POST at the server")
    carrier = _carrier(stack, before)
    carrier.unplug(2.0)

    book.wait_answered(["post-1"], timeout=10)
    error = book.single("post-1")["error"]
    assert error["kind"] == "modem_unavailable"
    assert "not send it again" in error["message"]
    # The unplugged modem comes back and serves: no copy of the POST goes out there.
    index = stack.sims.index(carrier)
    eventually(lambda: stack.health()["modems"][index]["ready"], 30, "the modem back")
    # A request through that modem, answered: anything it still held went out before.
    book.request("through-carrier", "coap://lab/hello", modem="ab"[index])
    book.wait_answered(["through-carrier"], timeout=20)
    assert book.single("through-carrier")["ok"] is True
    assert stack.coap.hits("post-1") == 1


def test_a_post_with_retry_is_sent_again_on_the_other_modem(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack(modems=2, latency_ms=50)
    book = ledger(stack)
    before = _datagrams_out(stack)
    _slow_post(book, "post-retry", retry=True)
    eventually(lambda: stack.coap.hits("post-retry") == 1, 10, "the POST at the server")
    _carrier(stack, before).unplug(5.0)

    book.wait_answered(["post-retry"], timeout=20)
    answer = book.single("post-retry")
    assert answer["ok"] is True, answer
    assert answer["payload"] == "2"  # the server counted both copies
