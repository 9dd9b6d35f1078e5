"""`HealthPublisher`: the retained `<base>/health` message.

Published every `health_interval` seconds, on each connect, shortly after `kick()`
(at most one per `health_min_gap`) and once more when the front closes; the dict from
the service's `health` callable with the front's counters merged into its `counters`
(and `queued`: answers waiting for the broker) and the front's `mqtt` member (the
broker node in use, the pool membership) into its `mqtt`. `InfoPublisher` keeps the
retained `<base>/info` published: when set, and on each connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bridge.mqtt.answers import JSON_CONTENT_TYPE
from bridge.mqtt.client import MqttClient
from bridge.mqtt.outbox import MqttClientError
from bridge.mqtt.settings import FrontSettings
from bridge.mqtt.topics import health_topic, info_topic

log = logging.getLogger(__name__)


class HealthPublisher:
    def __init__(
        self,
        client: MqttClient,
        settings: FrontSettings,
        health: Callable[[], Mapping[str, Any]] | None,
        mqtt: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._client = client
        self._settings = settings
        self._health = health
        self._mqtt = mqtt
        self._kick = asyncio.Event()

    def kick(self) -> None:
        self._kick.set()

    def snapshot(self) -> dict[str, Any]:
        health = dict(self._health()) if self._health is not None else {}
        health.setdefault("state", "online")
        counters = dict(health.get("counters", {}))
        counters.update(self._client.stats.as_dict())
        counters["queued"] = self._client.queued
        health["counters"] = counters
        health["mqtt"] = {**health.get("mqtt", {}), **self._mqtt()}
        return health

    async def run(self) -> None:
        topic = health_topic(self._settings.base_topic)
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that lands as the event fires, and this loop would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.health_interval):
                    await self._kick.wait()
            self._kick.clear()
            if self._client.connected:
                try:
                    payload = json.dumps(self.snapshot()).encode()
                except Exception:
                    log.exception("health snapshot failed")
                else:
                    self._client.publish(
                        topic, payload, retain=True, content_type=JSON_CONTENT_TYPE
                    )
            await asyncio.sleep(self._settings.health_min_gap)

    async def publish_final(self) -> None:
        """Publish the health once more and wait (at most `shutdown_flush`) for the ack:
        the last word before a stop, so the retained copy does not stay "online"."""
        if not self._client.connected:
            return
        try:
            payload = json.dumps(self.snapshot()).encode()
        except Exception:
            log.exception("health snapshot failed")
            return
        published = self._client.publish(
            health_topic(self._settings.base_topic),
            payload,
            retain=True,
            content_type=JSON_CONTENT_TYPE,
        )
        with contextlib.suppress(TimeoutError, MqttClientError):
            async with asyncio.timeout(self._settings.shutdown_flush):
                await published

    def on_connection(self, up: bool) -> None:
        """A connection listener for the client: publish on each connect."""
        if up:
            self._kick.set()


class InfoPublisher:
    def __init__(self, client: MqttClient, base_topic: str) -> None:
        self._client = client
        self._topic = info_topic(base_topic)
        self._payload: bytes | None = None

    def set(self, info: Mapping[str, Any]) -> None:
        """Publish `info` now (when connected), and again on every connect."""
        self._payload = json.dumps(info).encode()
        self._publish()

    def on_connection(self, up: bool) -> None:
        if up:
            self._publish()

    def _publish(self) -> None:
        if self._payload is not None and self._client.connected:
            self._client.publish(
                self._topic, self._payload, retain=True, content_type=JSON_CONTENT_TYPE
            )
