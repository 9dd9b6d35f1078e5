"""A bridge front in its own process, so a test can SIGKILL it (abrupt socket close).

`python -m tests.mqtt.bridge_process <port> <client_id>`: connects, prints `ready`,
then prints `serving <id>` for each request; its handler never answers.
"""

from __future__ import annotations

import asyncio
import sys

from bridge.mqtt import MqttClientSettings
from tests.mqtt.helpers import BASE, EchoHandler, running_front


async def main(port: int, client_id: str) -> None:
    settings = MqttClientSettings(
        client_id=client_id, base_topic=BASE, host="127.0.0.1", port=port, keepalive=5
    )
    handler = EchoHandler(gate=asyncio.Event())
    async with running_front(settings, handler):
        print("ready", flush=True)
        while True:
            request_id = await handler.started.get()
            print(f"serving {request_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
