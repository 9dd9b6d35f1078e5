"""`CoapRequests`, the bridge's `RequestHandler`: request payloads in, CoAP, answers out.

`parse` maps a payload to the front's `Envelope` (a refused request with a usable id
becomes a `rejection`); `serve` runs the exchange and yields the answer objects. The
`timeout` of an observe request bounds the whole stream, which then ends with a
`timeout` error; a server answering without Observe ends it after that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from bridge.coap.router import ModemRouter
from bridge.config import Settings
from bridge.errors import BridgeError, CoapTimeout
from bridge.mapping.parse import RequestRejected, parse_request
from bridge.mapping.request import CancelRequest, ParsedRequest, to_coap_message
from bridge.mapping.response import error_to_json, response_to_json
from bridge.mqtt import Envelope

log = logging.getLogger(__name__)

Answer = dict[str, Any]


class CoapRequests:
    """Serves parsed requests through `coap`; `settings` may be swapped on reload."""

    def __init__(self, settings: Settings, coap: ModemRouter) -> None:
        self.settings = settings
        self._coap = coap

    def parse(self, payload: bytes) -> Envelope[ParsedRequest]:
        try:
            request = parse_request(payload, self.settings)
        except RequestRejected as exc:
            if exc.request_id is None:
                raise
            # The front logs the rejection when it answers it.
            return Envelope(exc.request_id, response_topic=exc.response_topic, rejection=exc)
        if isinstance(request, CancelRequest):
            return Envelope(request.id, response_topic=request.response_topic, cancel=True)
        return Envelope(request.id, request, request.response_topic, observe=request.observe)

    async def serve(self, envelope: Envelope[ParsedRequest]) -> AsyncGenerator[Answer, None]:
        request = envelope.request
        assert request is not None, "the front serves only parsed requests"
        context = {"request_id": request.id, "target": request.target}
        log.debug("%s %s", request.method, request.uri, extra=context)
        message = to_coap_message(request)
        started = time.monotonic()
        if not request.observe:
            response = await self._coap.request(
                message,
                timeout=request.timeout,
                oscore=request.oscore,
                modem=request.modem,
                retry=request.retry,
            )
            rtt_ms = (time.monotonic() - started) * 1000
            log.debug(
                "%s %s -> %s in %.0f ms",
                request.method,
                request.uri,
                response.code,
                rtt_ms,
                extra=context,
            )
            yield response_to_json(request.id, response, rtt_ms)
            return
        # Closed with this generator, not when collected: the observation ends at once.
        async with contextlib.aclosing(self._observe(request, message, started, context)) as stream:
            async for answer in stream:
                yield answer

    async def _observe(
        self, request: ParsedRequest, message: Any, started: float, context: dict[str, str]
    ) -> AsyncGenerator[Answer, None]:
        deadline = started + request.timeout
        observation = self._coap.observe(
            message, timeout=request.timeout, oscore=request.oscore, modem=request.modem
        )
        notifications = aiter(observation)
        received = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    # Not asyncio.wait_for: on 3.11 it can swallow a cancellation (a cancel
                    # request) that lands just as a notification arrives.
                    async with asyncio.timeout(max(remaining, 0)):
                        notification = await anext(notifications)
                except TimeoutError:
                    if received == 0:
                        raise CoapTimeout(
                            f"no response from {request.target} within {request.timeout:g} s"
                        ) from None
                    raise CoapTimeout(
                        f"observation of {request.uri} ended: its timeout of "
                        f"{request.timeout:g} s ran out after {received} answers"
                    ) from None
                except StopAsyncIteration:
                    return
                received += 1
                sequence = notification.opt.observe
                rtt_ms = (time.monotonic() - started) * 1000
                log.debug(
                    "observe %s -> %s (seq %s)",
                    request.uri,
                    notification.code,
                    sequence,
                    extra=context,
                )
                yield response_to_json(request.id, notification, rtt_ms, observe_seq=sequence)
                if sequence is None:
                    return
        finally:
            observation.cancel()

    def error(self, request_id: str | None, exc: BaseException) -> Answer:
        # The front logs every failure with its kind; only a bug needs its traceback.
        if not isinstance(exc, BridgeError):
            log.error(
                "internal error serving a request", extra={"request_id": request_id}, exc_info=exc
            )
        return error_to_json(request_id, exc)
