"""What the front asks of a request handler: `Envelope` and `RequestHandler`.

`parse(payload)` is quick and pure and returns an `Envelope` (with `rejection` set for
an invalid request whose id is known; raising means no usable id); `serve(envelope)`
yields one answer for a plain request, one per notification for an observation;
`error(request_id, exc)` is the contract's error object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bridge.mqtt.answers import Answer

RequestT = TypeVar("RequestT")


@dataclass(frozen=True)
class Envelope(Generic[RequestT]):
    """What the front needs to know about one request message."""

    request_id: str | None
    request: RequestT | None = None
    response_topic: str | None = None
    observe: bool = False
    cancel: bool = False
    rejection: BaseException | None = None


class RequestHandler(Protocol[RequestT]):
    def parse(self, payload: bytes) -> Envelope[RequestT]: ...

    def serve(self, envelope: Envelope[RequestT]) -> AsyncIterator[Answer]: ...

    def error(self, request_id: str | None, exc: BaseException) -> Answer: ...
