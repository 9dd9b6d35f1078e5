"""One RFC 7641 observation through the modem's CoAP client (`ModemCoap.observe`)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Self

from aiocoap import error as coap_error

from bridge.coap.remote import ModemRemote

if TYPE_CHECKING:
    from bridge.coap.client import ModemCoap


class Observation:
    """An RFC 7641 observation: `async for` yields the first response, then notifications.

    Iteration ends when the server ends the observation (or the resource is not
    observable: then only the first response is yielded), and raises the bridge's errors
    otherwise. `cancel()` deregisters from the server.
    """

    def __init__(
        self,
        coap: ModemCoap,
        message: Any,
        remote: ModemRemote,
        timeout: float,
        oscore: str | None = None,
    ) -> None:
        self.remote = remote
        self._oscore = oscore
        self._coap = coap
        self._message = message
        self._timeout = timeout
        self._started = time.monotonic()
        self._first_received = False
        self._ended = False
        coap._require_transport().hold(remote)
        self._exchange = coap._context.request(message)
        # Subscribed now so no notification between the response and the first
        # __anext__ is missed (aiocoap keeps the latest one).
        self._notifications = aiter(self._exchange.observation)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        if not self._first_received:
            coap = self._coap
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._exchange.response
            except TimeoutError:
                self._end()
                raise coap._timed_out(self.remote, self._timeout) from None
            except coap_error.Error as exc:
                self._end()
                raise coap._translate(exc, self.remote, self._started, self._oscore) from exc
            except BaseException:
                self._end()
                raise
            self._first_received = True
            if response.opt.observe is None or not response.code.is_successful():
                self._end()
            return self._numbered(response)
        try:
            return self._numbered(await anext(self._notifications))
        except StopAsyncIteration:
            self._end()
            raise
        except coap_error.Error as exc:
            self._end()
            raise self._coap._translate(exc, self.remote, self._started, self._oscore) from exc

    def _numbered(self, message: Any) -> Any:
        # Under OSCORE aiocoap numbers a response by the server's sequence number, and
        # the first one (protected on the request's nonce, none of its own) as -1, while
        # the next may carry sequence number 0: shifted by one, the numbers start at 0
        # and still grow with every notification.
        if self._oscore is not None and message.opt.observe is not None:
            message.opt.observe += 1
        return message

    @property
    def cancelled(self) -> bool:
        return self._ended

    def cancel(self) -> None:
        """Stop the observation and tell the server (RFC 7641 §3.6); idempotent."""
        if self._ended:
            return
        registered = self._first_received
        self._end()
        if not self._exchange.response.done():
            self._exchange.response.cancel()
        if registered:
            self._coap._deregister(self._message, self.remote)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        observation = self._exchange.observation
        if observation is not None and not observation.cancelled:
            observation.cancel()
        self._coap._observation_ended(self)
