"""Library floors: what paho-mqtt and the CoAP layer cost per request on their own.

The `cpu` section sets the daemon's CPU per request beside these, to show how much of it
the chosen libraries take before any serial line, JSON or request bookkeeping:

- MQTT: a paho-mqtt MQTT 5 client on paho's own network loop doing the daemon's MQTT
  work for one request: take a QoS 1 request carrying Response Topic and Correlation
  Data, publish a QoS 1 answer with Correlation Data and Content Type, ack the request
  after the answer's PUBACK. It runs as `python -m bench.floors echo --port P`, so its
  CPU is its own; this process only drives it.
- CoAP: `ModemCoap` (aiocoap underneath) in this process, over a modem stand-in that
  answers every datagram at once; requests are built from a URI.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import aiocoap
import paho.mqtt.client as mqtt
from aiocoap.message import Message
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.coap_server import APPLICATION_JSON, SMALL_BODY
from bench.stack import Child, StackError, cpu_seconds
from bridge.coap import ModemCoap
from bridge.modem.driver import Datagram
from bridge.modem.health import ModemHealth

REQUEST_TOPIC = "floor/request"
ANSWER_TOPIC = "floor/answer"
REQUEST = b'{"id":"floor","method":"GET","uri":"coap://bench/small"}'
ANSWER = b'{"id":"floor","code":"2.05","payload":"{\\"temp\\":21.5,\\"ok\\":1}"}'


# -- MQTT -----------------------------------------------------------------------------


def _serve_echo(port: int) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="floor-echo", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.max_inflight_messages_set(0)
    # answer's mid -> request's mid, acked when the answer's PUBACK comes
    awaiting_puback: dict[int, int] = {}

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        request_properties: Any = message.properties
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = request_properties.CorrelationData
        properties.ContentType = "application/json"
        info = client.publish(
            request_properties.ResponseTopic, ANSWER, qos=1, properties=properties
        )
        awaiting_puback[info.mid] = message.mid

    def on_publish(
        client: mqtt.Client, userdata: object, mid: int, reason: Any, properties: Any
    ) -> None:
        request_mid = awaiting_puback.pop(mid, None)
        if request_mid is not None:
            client.ack(request_mid, 1)

    def on_subscribe(client: mqtt.Client, userdata: object, *args: object) -> None:
        print("ready", flush=True)

    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = 65535
    client.connect("127.0.0.1", port, properties=properties)
    client.subscribe(REQUEST_TOPIC, qos=1)
    client.loop_forever()


def mqtt_floor(workdir: Path, port: int, count: int, in_flight: int) -> float:
    """CPU seconds per 1,000 requests of the echo client, driven with `in_flight` out."""
    echo = Child(
        "MQTT floor echo client",
        [sys.executable, "-m", "bench.floors", "echo", "--port", str(port)],
        workdir / "floor-echo.log",
        subprocess.PIPE,
    )
    try:
        process = echo.start()
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise StackError(f"the MQTT floor's echo client did not start:\n{echo.log_tail()}")
        before = cpu_seconds(echo.pid)
        _drive_echo(port, count, in_flight)
        return 1000 * (cpu_seconds(echo.pid) - before) / count
    finally:
        echo.stop()


def _drive_echo(port: int, count: int, in_flight: int) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="floor-driver", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(0)
    subscribed = threading.Event()
    done = threading.Event()
    sent = answered = 0

    def send_one() -> None:
        nonlocal sent
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = ANSWER_TOPIC
        properties.CorrelationData = str(sent).encode()
        sent += 1
        client.publish(REQUEST_TOPIC, REQUEST, qos=1, properties=properties)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal answered
        answered += 1
        if sent < count:
            send_one()
        if answered == count:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.subscribe(ANSWER_TOPIC, qos=1)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise StackError("the broker did not acknowledge the MQTT floor's subscription")
        for _ in range(min(in_flight, count)):
            send_one()
        if not done.wait(120):
            raise StackError(f"MQTT floor: {answered} of {count} answered within 120 s")
    finally:
        client.disconnect()
        client.loop_stop()


# -- CoAP -----------------------------------------------------------------------------


class _AnsweringModem:
    """A `ModemDriver` whose every datagram is answered at once with the bench's body."""

    name = "floor"
    model = "floor"
    generation = 1
    ready = True
    port = "floor"
    max_datagram = 512
    block_size_exp = 4
    line_backlog = 0

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler: Callable[[Datagram], None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def health(self) -> ModemHealth:
        return ModemHealth(
            port=self.port,
            model=self.model,
            firmware="",
            imei="",
            ready=True,
            registered=True,
            rssi_dbm=None,
            ip=None,
            resets=0,
            malformed_urcs=0,
            unknown_lines=0,
            datagrams_in=0,
            generation=self.generation,
            state="ready",
            at_commands=0,
            at_timeouts=0,
            bytes_in=0,
            bytes_out=0,
        )

    async def wait_ready(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        return None

    async def open(self, host: str, port: int) -> int:
        return 1

    async def close(self, coap_id: int) -> None:
        return None

    async def free_instance_ids(self) -> list[int]:
        return [1, 2, 3, 4]

    def set_datagram_handler(self, handler: Callable[[Datagram], None]) -> None:
        self._handler = handler

    def add_reset_listener(self, handler: Callable[[], None]) -> None:
        return None

    def submit_send(self, coap_id: int, datagram: bytes) -> asyncio.Future[list[str]]:
        request = Message.decode(datagram)
        answer = Message(code=aiocoap.CONTENT, payload=SMALL_BODY, content_format=APPLICATION_JSON)
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, request.mid, request.token
        assert self._handler is not None
        self._loop.call_soon(self._handler, Datagram(coap_id, answer.encode()))
        sent: asyncio.Future[list[str]] = self._loop.create_future()
        sent.set_result([])
        return sent


async def _coap_floor(count: int, in_flight: int) -> float:
    async with ModemCoap(_AnsweringModem()) as coap:

        async def requests(number: int) -> None:
            for _ in range(number):
                message = Message(code=aiocoap.GET, uri="coap://127.0.0.1/small")
                await coap.request(message, timeout=5)

        await requests(100)  # warm-up: first instance, caches
        per_task, rest = divmod(count, in_flight)
        before = time.process_time()
        async with asyncio.TaskGroup() as group:
            for index in range(in_flight):
                group.create_task(requests(per_task + (1 if index < rest else 0)))
        return 1000 * (time.process_time() - before) / count


def coap_floor(count: int, in_flight: int) -> float:
    """CPU seconds per 1,000 requests through ModemCoap with an instantly answering modem
    (the stand-in's own decoding and encoding included)."""
    return asyncio.run(_coap_floor(count, in_flight))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="the MQTT floor's echo client")
    echo.add_argument("--port", type=int, required=True, help="the broker's port")
    options = parser.parse_args(argv)
    if options.command == "echo":
        _serve_echo(options.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
