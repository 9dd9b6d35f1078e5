"""`mqtt-coap-bridge request`: publish one request and print its answer(s), like mosquitto_rr.

A client of the bridge, not part of the daemon: it speaks the MQTT contract from the
outside. With MQTT 5 it uses Response Topic + Correlation Data; with 3.1.1 it puts
`response_topic` in the request body. With `pool_topic` the request goes to the fleet
pool (`<pool_topic>/request`, answered on `<pool_topic>/response/...`, MQTT 5 only).
With `retries`, a request still unanswered after `retry_after` seconds is published
again with the same id (the contract's client side of at-least-once delivery); the
first answer is printed.
"""

from __future__ import annotations

import json
import queue
import ssl
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.errors import BridgeError


class RequestToolError(BridgeError):
    """The request tool could not use the broker (exit status 3)."""

    exit_status = 3


class RequestInputError(RequestToolError):
    """The command line asked for something unusable, e.g. a payload that is not JSON
    (exit status 4)."""

    exit_status = 4


CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class BrokerTarget:
    host: str = "localhost"
    port: int = 1883
    protocol: int = 5
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls: bool = False


@dataclass(frozen=True)
class RequestJob:
    base_topic: str
    request: dict[str, Any]
    wait: float
    stream: bool = False
    max_answers: int | None = None
    # Display only: longer string payloads are shortened when printed.
    max_payload_chars: int | None = None
    retries: int = 0
    retry_after: float = 5.0
    pool_topic: str | None = None


def _connect(target: BrokerTarget, client_id: str) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if target.protocol == 5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if target.username:
        client.username_pw_set(target.username, target.password or None)
    broker = f"MQTT broker {target.host}:{target.port}"
    connacks: queue.Queue[ReasonCode] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: connacks.put(reason)
    try:
        if target.tls:
            client.tls_set(
                ca_certs=target.ca_file or None,
                certfile=target.cert_file or None,
                keyfile=target.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.connect(target.host, target.port, keepalive=30)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise RequestToolError(f"cannot connect to {broker}: {exc}") from None
    client.loop_start()
    try:
        reason = connacks.get(timeout=CONNECT_TIMEOUT)
    except queue.Empty:
        reason = None
    if reason is None or reason.is_failure:
        client.loop_stop()
        client.disconnect()
        if reason is None:
            raise RequestToolError(
                f"{broker} did not accept the connection within {CONNECT_TIMEOUT:g} s"
            )
        raise RequestToolError(f"{broker} refused the connection: {reason}")
    return client


def _subscribe(client: mqtt.Client, topic: str) -> None:
    """Subscribe and wait for the SUBACK; RequestToolError when refused or absent."""
    acks: queue.Queue[list[ReasonCode]] = queue.Queue()
    client.on_subscribe = lambda _c, _u, _m, reasons, _p: acks.put(reasons)
    client.subscribe(topic, qos=1)
    try:
        reasons = acks.get(timeout=CONNECT_TIMEOUT)
    except queue.Empty:
        raise RequestToolError(f"no SUBACK for {topic} within {CONNECT_TIMEOUT:g} s") from None
    refused = [str(reason) for reason in reasons if reason.is_failure]
    if refused:
        raise RequestToolError(f"the MQTT broker refused the subscription to {topic}: {refused[0]}")


def _shortened(answer: dict[str, Any], limit: int | None) -> dict[str, Any]:
    payload = answer.get("payload")
    if limit is None or not isinstance(payload, str) or len(payload) <= limit:
        return answer
    return {**answer, "payload": f"{payload[:limit]}... ({len(payload)} characters)"}


def wait_until_online(target: BrokerTarget, base_topic: str, timeout: float) -> None:
    """Block until the bridge's retained status says online; RequestToolError otherwise."""
    states: queue.Queue[str] = queue.Queue()
    client = _connect(target, f"mqtt-coap-bridge-wait-{uuid.uuid4().hex[:12]}")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            states.put(str(json.loads(message.payload).get("state")))
        except (ValueError, AttributeError):
            states.put("unreadable")

    client.on_message = on_message
    try:
        _subscribe(client, f"{base_topic}/status")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if states.get(timeout=remaining) == "online":
                    return
            except queue.Empty:
                break
        raise RequestToolError(f"the bridge at {base_topic} did not come online in {timeout:g} s")
    finally:
        client.loop_stop()
        client.disconnect()


def run_request(target: BrokerTarget, job: RequestJob, out: TextIO = sys.stdout) -> int:
    """Publish `job.request`, print each answer as one JSON line; return an exit status.

    Exit status: 0 for an answer with `"ok": true`, 1 for an error object or a CoAP
    error code, 2 when no answer arrived within `job.wait` seconds. Raises
    RequestToolError (its `exit_status`) when the broker cannot be used.
    """
    answers: queue.Queue[dict[str, Any]] = queue.Queue()
    session = uuid.uuid4().hex[:12]
    if job.pool_topic is not None and target.protocol != 5:
        raise RequestToolError("the pool is served with MQTT 5 only; use protocol 5")
    topic_root = job.pool_topic if job.pool_topic is not None else job.base_topic
    request_topic = f"{topic_root}/request"
    reply_topic = f"{topic_root}/response/rr-{session}"
    request = dict(job.request)
    client = _connect(target, f"mqtt-coap-bridge-rr-{session}")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            answers.put(json.loads(message.payload))
        except ValueError:
            answers.put({"ok": False, "error": {"kind": "internal", "message": "bad answer"}})

    client.on_message = on_message
    try:
        _subscribe(client, reply_topic)
        properties = None
        if target.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = reply_topic
            properties.CorrelationData = session.encode()
        else:
            request["response_topic"] = reply_topic
        body = json.dumps(request)
        client.publish(request_topic, body, qos=1, properties=properties).wait_for_publish(10)
        status = 2
        received = 0
        republished = 0
        try:
            while True:
                retry = received == 0 and republished < job.retries
                wait = job.retry_after if retry else job.wait
                try:
                    answer = answers.get(timeout=wait)
                except queue.Empty:
                    if retry:
                        republished += 1
                        print(
                            f"no answer within {wait:g} s: republished "
                            f"({republished} of {job.retries})",
                            file=sys.stderr,
                        )
                        client.publish(
                            request_topic, body, qos=1, properties=properties
                        ).wait_for_publish(10)
                        continue
                    if status == 2:
                        print(f"no answer within {wait:g} s", file=sys.stderr)
                    return status
                print(json.dumps(_shortened(answer, job.max_payload_chars)), file=out, flush=True)
                received += 1
                status = 0 if answer.get("ok") else 1
                if not job.stream or "observe" not in answer:
                    return status
                if job.max_answers is not None and received >= job.max_answers:
                    return status
        finally:
            if job.stream:
                cancel = {"id": request["id"], "cancel": True}
                client.publish(request_topic, json.dumps(cancel), qos=1).wait_for_publish(timeout=5)
    except KeyboardInterrupt:
        return 0
    finally:
        client.loop_stop()
        client.disconnect()
