"""Pool membership: the shared subscription on a connection of its own that follows liveness.

`PoolMembership(make_client, topic_filter, intake)` serves the fleet pool on a second
MQTT connection built by `make_client()` (clean start, session expiry 0, a short
keepalive and a small Receive Maximum: see `pool_client_settings`). Because that
session ends with the connection, the broker stops assigning pooled requests to this
gateway the moment it disconnects or is dropped for silence; nothing waits for it.

It joins at once; `set_wanted(False)` leaves the pool (closes that connection),
`set_wanted(True)` joins again: the service wants membership while a modem is ready. Every message
received goes to `intake` (the front), which acks it on its own connection after the
answer went out; an ack after the pool connection is gone is dropped, which is right:
the broker forgot that request with the session. `run()` is the one supervisor task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bridge.mqtt.client import MqttClient
from bridge.mqtt.incoming import IncomingMessage
from bridge.mqtt.settings import FrontSettings, MqttClientSettings, MqttProtocol
from bridge.mqtt.topics import shared_request_filter

log = logging.getLogger(__name__)

POOL_CLIENT_SUFFIX = "-pool"


def pool_client_settings(
    settings: MqttClientSettings, keepalive: int, receive_maximum: int
) -> MqttClientSettings:
    """The pool connection's settings, derived from the gateway's own connection."""
    return replace(
        settings,
        client_id=settings.client_id + POOL_CLIENT_SUFFIX,
        clean_start=True,
        session_expiry=0,
        keepalive=keepalive,
        receive_maximum=receive_maximum,
        announce_status=False,
    )


def pool_membership(
    client: MqttClient, settings: FrontSettings, intake: Callable[[IncomingMessage], None]
) -> PoolMembership | None:
    """The pool of `settings.shared_group` beside `client`'s session, or None without one
    (or on MQTT 3.1.1, which has no shared subscriptions: logged)."""
    if not settings.shared_group:
        return None
    if client.protocol is not MqttProtocol.V5:
        log.warning(
            "shared_group %r ignored: shared subscriptions need MQTT 5", settings.shared_group
        )
        return None
    pool_settings = pool_client_settings(
        client.settings, settings.pool_keepalive, settings.pool_receive_maximum
    )
    return PoolMembership(
        lambda: MqttClient(pool_settings),
        shared_request_filter(settings.shared_group, settings.pool_topic),
        intake,
    )


class PoolMembership:
    def __init__(
        self,
        make_client: Callable[[], MqttClient],
        topic_filter: str,
        intake: Callable[[IncomingMessage], None],
    ) -> None:
        self._make_client = make_client
        self._filter = topic_filter
        self._intake = intake
        self._wanted = asyncio.Event()
        self._wanted.set()
        self._unwanted = asyncio.Event()
        self._client: MqttClient | None = None
        self._subscribed = False
        self.joins = 0

    @property
    def state(self) -> str:
        """`member` (connected and subscribed), `joining`, or `left`."""
        if self._client is None:
            return "left"
        return "member" if self._client.connected and self._subscribed else "joining"

    def health(self) -> dict[str, Any]:
        return {"state": self.state, "joins": self.joins}

    def set_wanted(self, wanted: bool) -> None:
        if wanted == self._wanted.is_set():
            return
        if wanted:
            self._unwanted.clear()
            self._wanted.set()
        else:
            self._wanted.clear()
            self._unwanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            log.info("joining the pool %s", self._filter)
            self.joins += 1
            async with self._make_client() as client:
                self._client = client
                client.add_subscription(self._filter)
                try:
                    async with asyncio.TaskGroup() as group:
                        pump = group.create_task(self._pump(client), name="mqtt-pool-intake")
                        await self._unwanted.wait()
                        pump.cancel()
                finally:
                    self._client = None
                    self._subscribed = False
            log.info("left the pool %s: no modem is ready", self._filter)

    async def _pump(self, client: MqttClient) -> None:
        await client.wait_connected()  # the subscription is acknowledged
        self._subscribed = True
        async for message in client.messages():
            self._intake(message)
