"""Which remote gets a freed instance, and what a switch between remotes costs on the line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiocoap import POST, Message

from bridge.coap import CoapTransportSettings, pool
from bridge.coap.pool import InstancePool
from bridge.coap.remote import ModemRemote
from bridge.coap.stats import CoapStats
from tests.coap.conftest import Stack, StackFactory
from tests.fixtures.coap_servers import AiocoapServer
from tests.fixtures.modem import eventually

ServerFactory = Callable[[], Awaitable[AiocoapServer]]


class OneInstanceModem:
    """A modem stand-in with one instance id: enough to watch who gets it next."""

    generation = 0

    def __init__(self) -> None:
        self.free = [1]
        self.opened: list[tuple[str, int]] = []

    async def open(self, host: str, port: int) -> int:
        self.opened.append((host, port))
        return self.free.pop()

    async def close(self, coap_id: int) -> None:
        self.free.append(coap_id)

    async def free_instance_ids(self) -> list[int]:
        return list(self.free)


def one_instance_pool(modem: OneInstanceModem, idle: set[ModemRemote]) -> InstancePool:
    """Port 1 holds the one instance; ports 2 and 3 have 1 and 3 datagrams queued. Every
    remote not in `idle` has exchanges in flight."""
    queued = {ModemRemote("127.0.0.1", 2, 4): 1, ModemRemote("127.0.0.1", 3, 4): 3}
    return InstancePool(
        modem,  # type: ignore[arg-type]
        max_instances=1,
        idle_close=60,
        is_busy=lambda remote: remote not in idle,
        queued=lambda remote: queued.get(remote, 0),
        stats=CoapStats(),
    )


@pytest.mark.parametrize(
    ("head_start", "winner"),
    [(0.0, 3), (0.1, 2)],
    ids=["most-queued-first", "long-waiting-first"],
)
async def test_who_gets_a_freed_instance(
    monkeypatch: pytest.MonkeyPatch, head_start: float, winner: int
) -> None:
    """Port 2 (one datagram) starts waiting `head_start` s before port 3 (three)."""
    monkeypatch.setattr(pool, "_WAIT_AGED", 0.05)
    modem = OneInstanceModem()
    idle: set[ModemRemote] = set()
    instances = one_instance_pool(modem, idle)
    assert await instances.acquire(ModemRemote("127.0.0.1", 1, 4), lambda: True) is not None
    waiters = {
        2: asyncio.create_task(instances.acquire(ModemRemote("127.0.0.1", 2, 4), lambda: True))
    }
    await asyncio.sleep(head_start)
    waiters[3] = asyncio.create_task(
        instances.acquire(ModemRemote("127.0.0.1", 3, 4), lambda: True)
    )
    await asyncio.sleep(0.01)

    idle.add(ModemRemote("127.0.0.1", 1, 4))
    instances.exchange_finished()
    await asyncio.wait_for(waiters.pop(winner), 2)
    await asyncio.sleep(0.01)

    assert modem.opened[-1] == ("127.0.0.1", winner)
    (loser,) = waiters.values()
    assert not loser.done()
    loser.cancel()


async def echo(stack: Stack, server: AiocoapServer, text: str) -> bytes:
    response = await stack.coap.request(
        Message(code=POST, uri=server.uri("/echo"), payload=text.encode()), timeout=15
    )
    payload: bytes = response.payload
    return payload


def count_free_id_queries(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    listed = stack.modem.free_instance_ids

    async def counted() -> list[int]:
        calls.append(1)
        return await listed()

    monkeypatch.setattr(stack.modem, "free_instance_ids", counted)
    return calls


async def test_switching_remotes_costs_a_close_and_an_open_only(
    make_stack: StackFactory, aiocoap_servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await make_stack(CoapTransportSettings(max_instances=4, ack_timeout=0.25))
    servers = [await aiocoap_servers() for _ in range(8)]
    queries = count_free_id_queries(stack, monkeypatch)

    for round_ in range(2):
        for index, server in enumerate(servers):
            assert await echo(stack, server, f"{round_}/{index}") == f"{round_}/{index}".encode()

    stats = stack.coap.stats()
    assert stats.instances_opened == 16
    assert stats.instances_closed_lru == 12
    # The modem's free ids are listed once; the pool's own opens and closes keep count.
    assert len(queries) == 1


async def test_an_id_taken_behind_the_pools_back_makes_the_remote_wait_not_fail(
    make_stack: StackFactory, aiocoap_servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await make_stack(CoapTransportSettings(max_instances=4, ack_timeout=0.25))
    servers = [await aiocoap_servers() for _ in range(4)]
    assert await echo(stack, servers[0], "first") == b"first"
    queries = count_free_id_queries(stack, monkeypatch)
    # Someone else (a leftover from before a restart, say) holds one of the four ids.
    await stack.modem.open("127.0.0.1", servers[0].port)

    answers = await asyncio.gather(*(echo(stack, s, str(i)) for i, s in enumerate(servers[1:])))

    assert answers == [b"0", b"1", b"2"]
    assert stack.coap.stats().instances_open_failures == 1
    assert len(queries) == 1  # asked again once, after the refused OPEN
    assert stack.sim.stats.instances_open == 4


async def test_a_new_request_waits_for_the_next_turn_while_others_wait_for_room() -> None:
    modem = OneInstanceModem()
    idle: set[ModemRemote] = set()
    instances = one_instance_pool(modem, idle)
    first = ModemRemote("127.0.0.1", 1, 4)
    assert await instances.acquire(first, lambda: True) is not None
    # Nobody else waits: a new request to the open remote goes at once.
    await asyncio.wait_for(instances.take_turn(first), 1)

    waiting = asyncio.create_task(instances.acquire(ModemRemote("127.0.0.1", 2, 4), lambda: True))
    await asyncio.sleep(0.01)
    late = asyncio.create_task(instances.take_turn(first))
    await asyncio.sleep(0.05)
    assert not late.done()  # its batch went out; port 2 waits for the instance

    idle.add(first)  # what the instance carried is answered: it is closed for port 2
    instances.exchange_finished()
    await asyncio.wait_for(waiting, 2)
    await asyncio.wait_for(late, 2)  # and the late request joins port 1's next batch
    assert modem.opened[-1] == ("127.0.0.1", 2)


async def test_a_request_joins_its_remotes_datagrams_the_modem_has_not_acknowledged(
    make_stack: StackFactory, aiocoap_servers: ServerFactory
) -> None:
    """One instance and a slow line: while the instance's first `AT+GTCOAPSEND` is still
    on its way, a second request to the same remote goes out behind it in the same turn,
    although another remote waits for the instance."""
    stack = await make_stack(
        CoapTransportSettings(max_instances=1, ack_timeout=5.0), instances=1, baud=1200
    )
    first, other = await aiocoap_servers(), await aiocoap_servers()
    started = asyncio.create_task(echo(stack, first, "a1"))
    await eventually(lambda: stack.coap.stats().instances_open == 1, 5)
    waiting = asyncio.create_task(echo(stack, other, "b"))
    instances = stack.coap._require_transport().pool
    await eventually(
        lambda: instances.waiting_for_instance(ModemRemote("127.0.0.1", other.port, 4)), 5
    )
    joined = asyncio.create_task(echo(stack, first, "a2"))

    assert await asyncio.wait_for(asyncio.gather(started, joined, waiting), 20) == [
        b"a1",
        b"a2",
        b"b",
    ]
    assert stack.coap.stats().instances_opened == 2  # first, then other: no second turn
