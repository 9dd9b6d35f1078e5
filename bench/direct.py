"""The reference path: a plain aiocoap client talking UDP straight to the bench server.

Same server, same resource, same number in flight as the bridge run it is compared
with, so the ratio shows what the MQTT + modem path costs over bare CoAP in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiocoap

from bench.driver import Answer, RunResult


async def _run(uri: str, count: int, in_flight: int) -> RunResult:
    context = await aiocoap.Context.create_client_context()
    answers: list[Answer] = []
    failures: list[str] = []
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < count:
            issued += 1
            started = time.perf_counter()
            try:
                response = await context.request(
                    aiocoap.Message(code=aiocoap.GET, uri=uri)
                ).response
            except aiocoap.error.Error as exc:
                failures.append(type(exc).__name__)
                continue
            ok = response.code.is_successful()
            kind = "ok" if ok else f"coap {response.code.dotted}"
            now = time.perf_counter()
            answers.append(Answer(str(issued), now - started, ok, kind, now))

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(in_flight, count)):
                group.create_task(worker())
    finally:
        with contextlib.suppress(Exception):
            await context.shutdown()
    return RunResult(
        sent=count,
        answers=answers,
        elapsed=time.perf_counter() - started,
        duplicate_answers=0,
        unanswered=failures,
    )


def run_direct(uri: str, count: int, in_flight: int) -> RunResult:
    """`count` GETs of `uri` with `in_flight` outstanding, on a fresh event loop."""
    return asyncio.run(_run(uri, count, in_flight))


async def _fetch(uri: str) -> bytes:
    context = await aiocoap.Context.create_client_context()
    try:
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response
    finally:
        with contextlib.suppress(Exception):
            await context.shutdown()
    if not response.code.is_successful():
        raise aiocoap.error.Error(f"GET {uri} answered {response.code}")
    payload: bytes = response.payload
    return payload


def fetch(uri: str) -> bytes:
    """The body of one GET (block-wise if large), straight over UDP."""
    return asyncio.run(_fetch(uri))
