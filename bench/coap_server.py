"""The bench's CoAP server: one aiocoap process serving the same resources on several ports.

`python -m bench.coap_server --port P [--port P ...] [--oscore-context DIR]` prints
`ready` once every port is bound and serves until SIGTERM/SIGINT. Several ports stand
in for several remote servers (the pool-churn case); one process keeps the soak's hit
counter in one place. With `--oscore-context` (the server side of an OSCORE context)
the same resources answer OSCORE-protected requests too, beside plaintext ones.

Resources:
- `/small`: a 20-byte JSON body, the typical meter reading.
- `/p16`, `/p200`, `/p4k`: 16, 200 and 4096 bytes (the last one needs block-wise).
- `/soak?id=<request id>`: GET or POST, a small body; counts every exchange per id, so the soak can
  tell a duplicated send (the bridge sent one MQTT request twice) from a retransmission
  (aiocoap's message layer answers those from its cache without rendering again).
- `/echo`: POST answers with the request's payload, so a caller can match every answer
  to its request.
- `/hits`: JSON `{"total": n, "ids": distinct ids, "repeated": {id: count}}` for ids seen
  more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import aiocoap
import aiocoap.resource as resource
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

SMALL_BODY = b'{"temp":21.5,"ok":1}'
TEXT_PLAIN = 0
APPLICATION_JSON = 50


def _body(size: int) -> bytes:
    """Printable bytes, so the bridge answers with text rather than base64."""
    pattern = bytes(range(48, 123))
    return (pattern * (size // len(pattern) + 1))[:size]


class FixedBody(resource.Resource):  # type: ignore[misc]
    def __init__(self, body: bytes, content_format: int) -> None:
        super().__init__()
        self._body = body
        self._content_format = content_format

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self._body, content_format=self._content_format)


class SoakTarget(resource.Resource):  # type: ignore[misc]
    """Counts renders per request id taken from the `id=` query parameter."""

    def __init__(self, hits: Counter[str]) -> None:
        super().__init__()
        self._hits = hits

    def _count(self, request: aiocoap.Message) -> None:
        request_id = ""
        for parameter in request.opt.uri_query:
            if parameter.startswith("id="):
                request_id = parameter[3:]
        self._hits[request_id] += 1

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        self._count(request)
        return aiocoap.Message(payload=SMALL_BODY, content_format=APPLICATION_JSON)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self._count(request)
        return aiocoap.Message(
            code=aiocoap.CHANGED, payload=SMALL_BODY, content_format=APPLICATION_JSON
        )


class Echo(resource.Resource):  # type: ignore[misc]
    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class HitReport(resource.Resource):  # type: ignore[misc]
    def __init__(self, hits: Counter[str]) -> None:
        super().__init__()
        self._hits = hits

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        report = {
            "total": sum(self._hits.values()),
            "ids": len(self._hits),
            "repeated": {key: count for key, count in self._hits.items() if count > 1},
        }
        return aiocoap.Message(payload=json.dumps(report).encode(), content_format=APPLICATION_JSON)


def bench_site(hits: Counter[str]) -> resource.Site:
    site = resource.Site()
    site.add_resource(["small"], FixedBody(SMALL_BODY, APPLICATION_JSON))
    site.add_resource(["p16"], FixedBody(_body(16), TEXT_PLAIN))
    site.add_resource(["p200"], FixedBody(_body(200), TEXT_PLAIN))
    site.add_resource(["p4k"], FixedBody(_body(4096), TEXT_PLAIN))
    site.add_resource(["echo"], Echo())
    site.add_resource(["soak"], SoakTarget(hits))
    site.add_resource(["hits"], HitReport(hits))
    return site


async def serve(ports: Sequence[int], oscore_context: str | None = None) -> None:
    hits: Counter[str] = Counter()
    site = bench_site(hits)
    if oscore_context is not None:
        credentials = CredentialsMap()
        credentials[":bridge"] = oscore.FilesystemSecurityContext(oscore_context)
        site = OscoreSiteWrapper(site, credentials)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(site, ports):
        print("ready", flush=True)
        await stop.wait()


@contextlib.asynccontextmanager
async def serving(site: resource.Site, ports: Sequence[int]) -> AsyncIterator[None]:
    """`site` served on every port of 127.0.0.1 in `ports` until the block is left."""
    contexts = []
    try:
        for port in ports:
            contexts.append(
                # UDP only: the modem speaks nothing else, and a TCP listener on the same
                # number could collide with another program's port.
                await aiocoap.Context.create_server_context(
                    site, bind=("127.0.0.1", port), transports=["udp6"]
                )
            )
        yield
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                await context.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coap_server")
    parser.add_argument("--port", type=int, action="append", required=True, help="UDP port")
    parser.add_argument("--oscore-context", metavar="DIR", help="also serve OSCORE with it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.port, args.oscore_context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
