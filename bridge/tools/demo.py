"""`mqtt-coap-bridge demo`: the whole product on one machine, no hardware needed.

Starts a private mosquitto on a free loopback port, a sample aiocoap server, the L610
simulator (with 50 ms of simulated cellular latency), and the daemon itself as a
separate process, exactly as systemd would run it. Then it shows real round trips over
MQTT and keeps everything running until Ctrl-C so you can send your own requests.
The sample server also serves `/secret` with OSCORE only (RFC 8613), with a fresh
security context the bridge uses as the alias `secure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
from aiocoap import error as coap_error
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from aiocoap.transports.oscore import OSCOREAddress

from bridge.errors import BridgeError
from bridge.tools.loopback import free_port, mosquitto_binary, wait_for_tcp
from bridge.tools.oscore_contexts import ContextPair, write_pair
from bridge.tools.rr import BrokerTarget, RequestJob, run_request, wait_until_online

LARGE_BODY = bytes(range(32, 127)) * 32  # 3040 bytes: twelve 256-byte blocks


class DemoError(BridgeError):
    """A part of the demo could not be started."""


class Hello(resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=b"Hello from the demo CoAP server", content_format=0)


class Large(resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=LARGE_BODY, content_format=0)


class Secret(resource.Resource):
    """Answers OSCORE-protected requests only (4.01 Unauthorized to plaintext)."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        if not isinstance(request.remote, OSCOREAddress):
            raise coap_error.Unauthorized("OSCORE required")
        return aiocoap.Message(payload=b"Protected end to end with OSCORE", content_format=0)


class Clock(resource.ObservableResource):
    """The time, with a notification every second to every observer."""

    def __init__(self) -> None:
        super().__init__()
        self._ticker: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.updated_state()

    def update_observation_count(self, count: int) -> None:
        if count and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        elif not count and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        now = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        return aiocoap.Message(payload=now.encode(), content_format=0)


def coap_site() -> resource.Site:
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    site.add_resource(["hello"], Hello())
    site.add_resource(["large"], Large())
    site.add_resource(["time"], Clock())
    site.add_resource(["secret"], Secret())
    return site


@contextlib.contextmanager
def coap_server(port: int, oscore_context: Path) -> Iterator[None]:
    """Run the sample server on its own event loop thread; plaintext and OSCORE."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] | None = None

    async def serve() -> None:
        nonlocal stop
        credentials = CredentialsMap()
        security = oscore.FilesystemSecurityContext(str(oscore_context))
        credentials[":bridge"] = security
        site = OscoreSiteWrapper(coap_site(), credentials)
        context = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", port), transports=["udp6"]
        )
        stop = loop.create_future()
        started.set()
        await stop
        await context.shutdown()
        # Stored and unlocked now, while its directory exists: aiocoap would do it when
        # the object is collected, after the demo has removed its temporary directory.
        security._destroy()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise DemoError(f"the sample CoAP server did not start on 127.0.0.1:{port}")
    try:
        yield
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(5)


@contextlib.contextmanager
def process(args: list[str], name: str, **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(args, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 15 s; killing it", file=sys.stderr)
                child.kill()
                child.wait()


def write_configs(
    workdir: Path, mqtt_port: int, coap_port: int, pty_path: str, contexts: ContextPair
) -> Path:
    (workdir / "mosquitto.conf").write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {workdir}/\n"
    )
    config = workdir / "config.yaml"
    config.write_text(
        f"""gateway_id: demo
modem:
  port: {pty_path}
  command_timeout: 5
mqtt:
  host: 127.0.0.1
  port: {mqtt_port}
coap:
  servers:
    demo:
      host: 127.0.0.1
      port: {coap_port}
    secure:
      host: 127.0.0.1
      port: {coap_port}
      oscore:
        context_dir: {contexts.client}
      # The same server also serves plaintext resources (the alias demo).
      require_oscore: false
  default_timeout: 30
health_interval: 10
"""
    )
    return config


def show(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_demo(*, log_format: str | None, log_level: str | None, wait: bool = True) -> int:
    python = sys.executable
    mqtt_port = free_port()
    coap_port = free_port(socket.SOCK_DGRAM)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coap-bridge-demo-")))
        contexts = write_pair(workdir / "oscore")
        stack.enter_context(coap_server(coap_port, contexts.server))
        show(
            f"sample CoAP server on coap://127.0.0.1:{coap_port} "
            "(/hello, /large, /time; /secret with OSCORE only)"
        )

        simulator = stack.enter_context(
            process(
                [python, "-m", "bridge", "simulate", "--latency-ms", "50"],
                "simulator",
                stdout=subprocess.PIPE,
            )
        )
        assert simulator.stdout is not None
        pty_path = simulator.stdout.readline().strip()
        if not pty_path:
            raise DemoError("the simulator did not print its port path")
        show(f"L610 simulator on {pty_path} (50 ms added each way)")

        config = write_configs(workdir, mqtt_port, coap_port, pty_path, contexts)
        stack.enter_context(
            process(
                [mosquitto_binary(), "-c", str(workdir / "mosquitto.conf")],
                "mosquitto",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_tcp(mqtt_port, 10)
        show(f"mosquitto on 127.0.0.1:{mqtt_port}")

        daemon_args = [python, "-m", "bridge", "run", "-c", str(config)]
        if log_format:
            daemon_args += ["--log-format", log_format]
        if log_level:
            daemon_args += ["--log-level", log_level]
        stack.enter_context(process(daemon_args, "daemon"))
        show(f"daemon started: {' '.join(daemon_args[2:])}")

        target = BrokerTarget(host="127.0.0.1", port=mqtt_port)
        base = "coap-bridge/demo"
        wait_until_online(target, base, 60)
        show(f"the bridge is online (retained {base}/status)")
        show("GET coap://demo/hello")
        status = run_request(
            target,
            RequestJob(base, {"id": "demo-1", "method": "GET", "uri": "coap://demo/hello"}, 60),
        )
        show(f"GET coap://demo/large (block-wise, {len(LARGE_BODY)} bytes)")
        status |= run_request(
            target,
            RequestJob(
                base,
                {"id": "demo-2", "method": "GET", "uri": "coap://demo/large"},
                60,
                max_payload_chars=80,
            ),
        )
        show("observe coap://demo/time (3 notifications, then cancel)")
        status |= run_request(
            target,
            RequestJob(
                base,
                {"id": "demo-3", "method": "GET", "uri": "coap://demo/time", "observe": True},
                60,
                stream=True,
                max_answers=3,
            ),
        )
        show("GET coap://secure/secret (protected end to end with OSCORE, RFC 8613)")
        status |= run_request(
            target,
            RequestJob(base, {"id": "demo-4", "method": "GET", "uri": "coap://secure/secret"}, 60),
        )
        print(
            f"""
The demo keeps running. Send your own request from another terminal:

  mosquitto_sub -h 127.0.0.1 -p {mqtt_port} -t '{base}/response/#' -v &
  mosquitto_pub -h 127.0.0.1 -p {mqtt_port} -q 1 -t '{base}/request' \\
      -m '{{"id": "mine-1", "method": "GET", "uri": "coap://demo/hello"}}'

or, with the bridge's own client:

  {Path(python).parent}/mqtt-coap-bridge request -H 127.0.0.1 -p {mqtt_port} \\
      -t {base} coap://demo/hello

Health: mosquitto_sub -h 127.0.0.1 -p {mqtt_port} -t '{base}/health' -C 1
Press Ctrl-C to stop.""",
            flush=True,
        )
        if wait:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return status
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack never swallows
