"""One request the front is serving (`InFlight`), and how a redelivery is recognised."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from bridge.mqtt.answers import Delivered


@dataclass(eq=False)
class InFlight:
    request_id: str
    digest: bytes
    first_answer: asyncio.Future[Delivered]
    finished: asyncio.Future[None]
    observe: bool
    task: asyncio.Task[None] | None = None
    started: bool = False
    cancel_reason: str | None = None
    dependents: list[asyncio.Task[None]] = field(default_factory=list)


def request_digest(payload: bytes) -> bytes:
    """What tells a redelivery (the same request) from another request with the same id."""
    return hashlib.blake2b(payload, digest_size=16).digest()


def cancellable(record: InFlight) -> bool:
    """A plain request whose answer is out cannot be cancelled any more: a `cancelled`
    error after it would be a second answer."""
    return record.observe or not record.first_answer.done()
