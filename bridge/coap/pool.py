"""The modem's CoAP client instances, shared out per remote.

One instance per (host, port), opened on first use and reused; the least recently used
idle one is closed when another remote needs room, idle ones after `idle_close` seconds,
and all are forgotten when the modem resets. "Idle" is the transport's `is_busy`. Of the
remotes waiting for room, the one with the most datagrams queued goes first (one OPEN
then carries the most), unless another has waited longer than `_WAIT_AGED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.coap.remote import ModemRemote
from bridge.coap.stats import CoapStats
from bridge.errors import BridgeError, ModemError
from bridge.modem.driver import ModemDriver

logger = logging.getLogger(__name__)

# How often a remote waiting for an instance re-checks whether its exchanges still want
# one, when no instance is freed in the meantime.
_WAIT_RECHECK = 0.25
# A remote waiting this long for room goes ahead of those with more queued, so that a
# remote with one request is not starved by busier ones.
_WAIT_AGED = 5.0


@dataclass(eq=False)
class Instance:
    remote: ModemRemote
    coap_id: int
    generation: int
    last_used: float = field(default_factory=time.monotonic)


class InstancePool:
    def __init__(
        self,
        modem: ModemDriver,
        *,
        max_instances: int,
        idle_close: float,
        is_busy: Callable[[ModemRemote], bool],
        queued: Callable[[ModemRemote], int],
        stats: CoapStats,
    ) -> None:
        self._modem = modem
        self._max_instances = max_instances
        self._idle_close = idle_close
        self._is_busy = is_busy
        self._queued = queued
        # LRU order: least recently used first.
        self._instances: OrderedDict[ModemRemote, Instance] = OrderedDict()
        self._by_id: dict[int, Instance] = {}
        # Opening and closing decide about capacity; one decision at a time.
        self._capacity_lock = asyncio.Lock()
        # Set (and replaced) when something changed: requests waiting for their turn
        # look again; of the remotes waiting for room only the first in line is woken,
        # since only it may act (each of the others would wake to wait again).
        self._changed = asyncio.Event()
        self._room_changed: dict[ModemRemote, asyncio.Event] = {}
        self._waiting: Counter[ModemRemote] = Counter()
        self._waiting_since: dict[ModemRemote, float] = {}
        # Ids the modem has free, as last listed (AT+GTCOAPOPEN?) and kept up to date by
        # our own opens and closes since; None: ask again (after a reset or a surprise).
        # Each switch to another remote then costs a CLOSE and an OPEN, not a third
        # command queued behind the line's sends.
        self._free_ids: int | None = None
        self._free_generation = -1
        self._stats = stats

    @property
    def open_count(self) -> int:
        return len(self._instances)

    def waiting_for_instance(self, remote: ModemRemote) -> bool:
        return self._waiting[remote] > 0

    def remote_of(self, coap_id: int) -> ModemRemote | None:
        """The remote a datagram from `coap_id` came from, or None if the id is not ours now."""
        instance = self._by_id.get(coap_id)
        if instance is None or instance.generation != self._modem.generation:
            return None
        return instance.remote

    def current(self, remote: ModemRemote) -> Instance | None:
        instance = self._instances.get(remote)
        if instance is None:
            return None
        if instance.generation != self._modem.generation:
            self._forget(instance)
            return None
        return instance

    def touch(self, remote: ModemRemote) -> None:
        instance = self._instances.get(remote)
        if instance is not None:
            instance.last_used = time.monotonic()
            self._instances.move_to_end(remote)

    async def take_turn(self, remote: ModemRemote) -> None:
        """Wait, before a new request to `remote` starts, while its open instance has had
        its turn: its queued datagrams are on the line (the modem took each with `OK`)
        and other remotes wait for room. The request then goes with the remote's next
        batch, and the instance is free as soon as what it carries is answered, instead
        of being held for one late request."""
        while self._turn_over(remote):
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WAIT_RECHECK):
                    await changed.wait()

    def _turn_over(self, remote: ModemRemote) -> bool:
        if self.current(remote) is None or self._queued(remote):
            return False
        return any(waiting != remote for waiting in self._waiting)

    def exchange_finished(self) -> None:
        """Something may have become idle: remotes waiting for room look again."""
        self._signal()

    async def acquire(
        self, remote: ModemRemote, still_needed: Callable[[], bool]
    ) -> Instance | None:
        """The open instance for `remote`, opening one (and making room) if needed.

        Waits while every instance is busy or another waiting remote goes first; returns
        None once `still_needed()` is false (whoever needed it gave up). Raises what the
        modem raises for OPEN.
        """
        instance = self.current(remote)
        if instance is not None:
            self.touch(remote)
            return instance
        self._waiting[remote] += 1
        self._waiting_since.setdefault(remote, time.monotonic())
        try:
            return await self._wait_for_room(remote, still_needed)
        finally:
            self._waiting[remote] -= 1
            if not self._waiting[remote]:
                del self._waiting[remote]
                del self._waiting_since[remote]
                self._room_changed.pop(remote, None)
                # The remote that went first may leave without taking the room.
                self._signal()

    async def _wait_for_room(
        self, remote: ModemRemote, still_needed: Callable[[], bool]
    ) -> Instance | None:
        while True:
            instance = self.current(remote)
            if instance is not None:
                self.touch(remote)
                return instance
            if not still_needed():
                return None
            changed = self._room_changed.get(remote)
            if changed is None:
                changed = self._room_changed[remote] = asyncio.Event()
            if self._first_in_line(remote):
                async with self._capacity_lock:
                    if self.current(remote) is None and await self._make_room():
                        opened = await self._open(remote)
                        if opened is not None:
                            return opened
                        continue
                if self.current(remote) is not None:
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WAIT_RECHECK):
                    await changed.wait()

    def _first_in_line(self, remote: ModemRemote) -> bool:
        return self._first_waiting() == remote

    def _first_waiting(self) -> ModemRemote | None:
        if not self._waiting:
            return None
        now = time.monotonic()

        def rank(waiting: ModemRemote) -> tuple[bool, int, float]:
            waited = now - self._waiting_since[waiting]
            return (waited >= _WAIT_AGED, self._queued(waiting), waited)

        return max(self._waiting, key=rank)

    def invalidate(self, remote: ModemRemote, coap_id: int) -> None:
        """Forget an instance the modem no longer accepts (a reset we have not heard of yet)."""
        instance = self._instances.get(remote)
        if instance is not None and instance.coap_id == coap_id:
            logger.warning(
                "forgetting the instance for %s: the modem refused it",
                remote.label,
                extra={"coap_id": coap_id},
            )
            self._forget(instance)

    def modem_reset(self) -> None:
        """The modem restarted: every instance of an older generation is gone."""
        generation = self._modem.generation
        lost = [i for i in self._instances.values() if i.generation != generation]
        for instance in lost:
            self._forget(instance)
        self._stats.instances_lost_in_resets += len(lost)
        if lost:
            logger.warning(
                "modem reset: %d coap instance(s) lost (%s); they reopen on next use",
                len(lost),
                ", ".join(f"coap_id={i.coap_id} {i.remote.label}" for i in lost),
            )

    async def close_idle(self) -> None:
        """Close instances unused for `idle_close` seconds and not busy."""
        deadline = time.monotonic() - self._idle_close
        for instance in list(self._instances.values()):
            if instance.last_used <= deadline and not self._is_busy(instance.remote):
                async with self._capacity_lock:
                    if self._instances.get(instance.remote) is instance and not self._is_busy(
                        instance.remote
                    ):
                        self._stats.instances_closed_idle += 1
                        await self._close(instance, "idle")

    async def run_idle_closer(self) -> None:
        interval = min(max(self._idle_close / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            await self.close_idle()

    async def close_all(self) -> None:
        for instance in list(self._instances.values()):
            await self._close(instance, "shutdown")

    # -- internals ----------------------------------------------------------------------

    async def _make_room(self) -> bool:
        """True when an instance can be opened now, closing the LRU idle one if need be."""
        if len(self._instances) < self._max_instances and await self._free_id_count():
            return True
        for instance in list(self._instances.values()):
            if not self._is_busy(instance.remote):
                self._stats.instances_closed_lru += 1
                await self._close(instance, "least recently used, room needed")
                return bool(await self._free_id_count())
        return False

    async def _free_id_count(self) -> int:
        generation = self._modem.generation
        if self._free_ids is None or self._free_generation != generation:
            free = len(await self._modem.free_instance_ids())
            self._free_ids, self._free_generation = free, generation
            return free
        return self._free_ids

    def _count_free(self, change: int) -> None:
        if self._free_ids is not None and self._free_generation == self._modem.generation:
            self._free_ids = max(self._free_ids + change, 0)

    async def _open(self, remote: ModemRemote) -> Instance | None:
        generation = self._modem.generation
        try:
            coap_id = await self._modem.open(remote.host, remote.port)
        except ModemError:
            self._stats.instances_open_failures += 1
            if self._free_ids is None:
                raise
            # Refused while the count said an id was free: if none is, the count was
            # wrong (an id held since before we started) and the remote waits for room;
            # otherwise the modem refuses this remote itself.
            self._free_ids = None
            if await self._free_id_count():
                raise
            return None
        except BridgeError:
            self._stats.instances_open_failures += 1
            self._free_ids = None
            raise
        self._count_free(-1)
        if generation != self._modem.generation:
            # Opened across a reset: the id may belong to either side of it. Try to free
            # it (harmless if it is already gone) and open again in the new generation.
            with contextlib.suppress(BridgeError):
                await self._modem.close(coap_id)
            return None
        instance = Instance(remote, coap_id, generation)
        self._instances[remote] = instance
        self._by_id[coap_id] = instance
        self._stats.instances_opened += 1
        logger.info(
            "instance open for %s (%d open)",
            remote.label,
            len(self._instances),
            extra={"coap_id": coap_id},
        )
        return instance

    async def _close(self, instance: Instance, reason: str) -> None:
        self._forget(instance)
        try:
            await self._modem.close(instance.coap_id)
        except BridgeError as exc:
            # Already gone (reset) or modem away: either way it is no longer ours.
            self._free_ids = None
            logger.info(
                "closing an instance (%s) failed: %s",
                reason,
                exc,
                extra={"coap_id": instance.coap_id},
            )
        else:
            self._count_free(+1)
            logger.info(
                "instance for %s closed (%s)",
                instance.remote.label,
                reason,
                extra={"coap_id": instance.coap_id},
            )

    def _forget(self, instance: Instance) -> None:
        if self._instances.get(instance.remote) is instance:
            del self._instances[instance.remote]
        if self._by_id.get(instance.coap_id) is instance:
            del self._by_id[instance.coap_id]
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        first = self._first_waiting()
        room_changed = None if first is None else self._room_changed.pop(first, None)
        if room_changed is not None:
            room_changed.set()
