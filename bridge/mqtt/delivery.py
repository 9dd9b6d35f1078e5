"""`FirstAnswers`: the delivery of each request's first answer, by callbacks.

Every request has one: publish the answer, ack the request once the broker's PUBACK
came back (or the broker rejected the answer: `Answers.published`), then let the
request's task go on. It used to be a task of its own, shielded from the request's
cancellation; callbacks do the same with a fraction of the loop's work: a cancel that
arrives meanwhile ends only the request's wait, not the delivery nor the ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.mqtt.answers import Answers, Delivered, Routing
from bridge.mqtt.incoming import IncomingMessage

log = logging.getLogger(__name__)


class FirstAnswers:
    """`before_publish` runs just before each publish (the front's journal commit)."""

    def __init__(self, answers: Answers, before_publish: Callable[[], None]) -> None:
        self._answers = answers
        self._before_publish = before_publish
        # Published and not yet acknowledged by the broker: the shutdown waits for them.
        self._sending: set[asyncio.Future[None]] = set()
        self._abandoned = False

    def deliver(
        self, message: IncomingMessage, routing: Routing, request_id: str, first: Delivered
    ) -> asyncio.Future[None]:
        """Resolved once `message` was acked, or will not be; cancelling it (its waiter
        was cancelled) does not stop the delivery."""
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()
        # On the next loop turn, as the task was: one journal commit then covers every
        # answer of this turn.
        loop.call_soon(self._publish, message, routing, request_id, first, delivered)
        return delivered

    async def drain(self) -> None:
        """Until every answer published so far was acknowledged (bound it by a timeout)."""
        if self._sending:
            await asyncio.wait(self._sending)

    def abandon(self) -> None:
        """Shutting down: answers acknowledged from now on no longer ack their requests;
        the broker redelivers those next session."""
        self._abandoned = True

    def _publish(
        self,
        message: IncomingMessage,
        routing: Routing,
        request_id: str,
        first: Delivered,
        delivered: asyncio.Future[None],
    ) -> None:
        try:
            self._before_publish()
            sent = self._answers.deliver_now(message, routing, first)
        except Exception:
            log.exception("delivery of the answer to request %s failed", request_id)
            _resolve(delivered)
            return
        self._sending.add(sent)
        sent.add_done_callback(
            lambda sent: self._sent(sent, message, routing, request_id, delivered)
        )

    def _sent(
        self,
        sent: asyncio.Future[None],
        message: IncomingMessage,
        routing: Routing,
        request_id: str,
        delivered: asyncio.Future[None],
    ) -> None:
        self._sending.discard(sent)
        if self._abandoned:
            return
        try:
            if self._answers.published(sent, routing, request_id):
                message.ack()
        except Exception:
            log.exception("delivery of the answer to request %s failed", request_id)
        _resolve(delivered)


def _resolve(future: asyncio.Future[None]) -> None:
    # Its waiter may have been cancelled (which cancels it) before the delivery ended.
    if not future.done():
        future.set_result(None)
