"""The router's placement and failover rules, over stand-in stacks (no modem, no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiocoap import GET, POST, Message

from bridge.coap.router import Lane, ModemRouter
from bridge.coap.stats import CoapStats
from bridge.errors import InvalidRequest, ModemUnavailable


class StandInDriver:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True
        self.line_backlog = 0
        self._listeners: list[Callable[[], None]] = []

    def add_reset_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def go_down(self) -> None:
        self.ready = False
        for listener in self._listeners:
            listener()


class StandInStack:
    """Answers each request with its own name after `delay`; holds it while `held`."""

    def __init__(self, name: str, *, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.in_flight = 0
        self.sent: list[Any] = []
        self.held = asyncio.Event()
        self.held.set()

    async def request(self, message: Any, *, timeout: float, oscore: str | None) -> str:  # noqa: ASYNC109
        self.sent.append(message)
        self.in_flight += 1
        try:
            await self.held.wait()
            await asyncio.sleep(self.delay)
            return self.name
        finally:
            self.in_flight -= 1

    def stats(self) -> CoapStats:
        return CoapStats(in_flight=self.in_flight, datagrams_out=len(self.sent))

    def set_unmatched_handler(self, handler: Callable[[Any], None]) -> None:
        pass


def _router(*names: str) -> tuple[ModemRouter, dict[str, StandInDriver], dict[str, StandInStack]]:
    router = ModemRouter(names)
    drivers = {name: StandInDriver(name) for name in names}
    stacks = {name: StandInStack(name) for name in names}
    for name in names:
        router.add(Lane(name, drivers[name], stacks[name]))  # type: ignore[arg-type]
    return router, drivers, stacks


def _get() -> Message:
    return Message(code=GET, uri="coap://127.0.0.1/x")


async def test_requests_go_to_the_modem_with_fewest_in_flight() -> None:
    router, _, stacks = _router("a", "b")
    stacks["a"].held.clear()
    stacks["b"].held.clear()
    pending = [asyncio.create_task(router.request(_get(), timeout=5)) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert (stacks["a"].in_flight, stacks["b"].in_flight) == (5, 5)
    stacks["a"].held.set()
    stacks["b"].held.set()
    assert sorted(await asyncio.gather(*pending)) == ["a"] * 5 + ["b"] * 5
    assert router.stats().datagrams_out == 10


async def test_a_named_modem_takes_it_and_an_unknown_name_is_invalid() -> None:
    router, _, stacks = _router("a", "b")
    assert await router.request(_get(), timeout=5, modem="b") == "b"
    with pytest.raises(InvalidRequest, match="no modem named 'z'; configured: a, b"):
        await router.request(_get(), timeout=5, modem="z")
    assert len(stacks["a"].sent) == 0


async def test_a_modem_that_is_down_gets_no_new_request() -> None:
    router, drivers, _ = _router("a", "b")
    drivers["a"].ready = False
    assert {await router.request(_get(), timeout=5) for _ in range(4)} == {"b"}


async def test_a_get_in_flight_on_a_modem_that_goes_down_is_sent_on_the_other() -> None:
    router, drivers, stacks = _router("a", "b")
    stacks["a"].held.clear()
    # A tie goes to the modem listed first: the request starts on a.
    answer = asyncio.create_task(router.request(_get(), timeout=5))
    await asyncio.sleep(0.01)
    drivers["a"].go_down()
    assert await answer == "b"
    assert stacks["a"].in_flight == 0  # the exchange on a was cancelled


@pytest.mark.parametrize("retry", [False, True])
async def test_a_post_in_flight_is_sent_again_only_with_retry(retry: bool) -> None:
    router, drivers, stacks = _router("a", "b")
    stacks["a"].held.clear()
    post = Message(code=POST, uri="coap://127.0.0.1/x", payload=b"1")
    answer = asyncio.create_task(router.request(post, timeout=5, retry=retry))
    await asyncio.sleep(0.01)
    drivers["a"].go_down()
    if retry:
        assert await answer == "b"
    else:
        with pytest.raises(ModemUnavailable, match="does not send it again"):
            await answer
        assert stacks["b"].sent == []


async def test_with_no_other_modem_ready_the_request_stays_where_it_is() -> None:
    router, drivers, stacks = _router("a", "b")
    drivers["b"].ready = False
    stacks["a"].held.clear()
    answer = asyncio.create_task(router.request(_get(), timeout=5))
    await asyncio.sleep(0.01)
    drivers["a"].go_down()
    await asyncio.sleep(0.01)
    stacks["a"].held.set()
    assert await answer == "a"


async def test_with_no_modem_running_a_request_ends_modem_unavailable_at_its_timeout() -> None:
    router = ModemRouter(["a"])
    with pytest.raises(ModemUnavailable, match="no modem is up"):
        await router.request(_get(), timeout=0.05)
