"""What the session subscribes, what the broker granted, and why it refused (sans-IO).

The client sends the SUBSCRIBEs this asks for and feeds back each SUBACK. A present
session keeps what this process already sent; a refused filter is forgotten so the
retry (`retry_in`, with backoff) or the next connect subscribes it again; listeners
hear `why` on a refusal and `None` once a refused subscription is granted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from paho.mqtt.reasoncodes import ReasonCode

from bridge.backoff import Backoff

log = logging.getLogger(__name__)

Filters = list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Suback:
    # Seconds until the refused filters should be sent again, or None: nothing refused.
    retry_in: float | None
    # The SUBACK of the latest SUBSCRIBE, all granted: the session is ready now.
    completes_connect: bool


class Subscriptions:
    def __init__(self, retry: Backoff) -> None:
        self._wanted: dict[str, int] = {}
        self._sent: set[str] = set()  # filters sent to the broker by this process
        self._by_mid: dict[int, list[str]] = {}
        self._retry = retry
        self._listeners: list[Callable[[str | None], None]] = []
        self.awaiting: int | None = None  # the mid of the latest SUBSCRIBE
        # Why the broker refused a subscription (the client is not ready), or None.
        self.error: str | None = None

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        self._listeners.append(listener)

    def want(self, topic_filter: str, qos: int) -> Filters:
        """Record `topic_filter`; the filters to send now if the session is up."""
        self._wanted[topic_filter] = qos
        return [(topic_filter, qos)]

    def on_connect(self, session_present: bool) -> Filters:
        """The filters this connect must subscribe (all of them without a session)."""
        self.awaiting = None
        return [
            (topic_filter, qos)
            for topic_filter, qos in self._wanted.items()
            if not session_present or topic_filter not in self._sent
        ]

    def missing(self) -> Filters:
        """Wanted filters not sent (refused ones, for the retry)."""
        return [(f, qos) for f, qos in self._wanted.items() if f not in self._sent]

    def sent(self, mid: int, filters: Filters) -> None:
        """A SUBSCRIBE went out; its SUBACK is the one the session waits for."""
        self._by_mid[mid] = [topic_filter for topic_filter, _ in filters]
        self._sent.update(topic_filter for topic_filter, _ in filters)
        self.awaiting = mid

    def acknowledged(self, mid: int, reason_codes: Sequence[ReasonCode], ready: bool) -> Suback:
        filters = self._by_mid.pop(mid, list(self._wanted))
        refused = {
            topic_filter: str(code)
            for topic_filter, code in zip(filters, reason_codes, strict=False)
            if code.is_failure
        }
        if refused:
            self._sent.difference_update(refused)
            self.error = "MQTT broker refused the subscription to " + ", ".join(
                f"{topic_filter} ({why})" for topic_filter, why in refused.items()
            )
            delay = self._retry.next()
            log.error("%s; not serving, subscribing again in %.1f s", self.error, delay)
            self._notify()
            return Suback(retry_in=delay, completes_connect=False)
        log.info("subscribed to %s", filters)
        if mid != self.awaiting or not ready:
            return Suback(retry_in=None, completes_connect=False)
        self.awaiting = None
        self._retry.reset()
        was_refused, self.error = self.error, None
        if was_refused is not None:
            self._notify()
        return Suback(retry_in=None, completes_connect=True)

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener(self.error)
            except Exception:
                log.exception("MQTT subscription listener failed")
