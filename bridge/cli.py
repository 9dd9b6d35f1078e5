"""Command-line entry point: `mqtt-coap-bridge <verb>`.

Verbs: `run` (the daemon), `check-config`, `request` (one request over MQTT, printed
like mosquitto_rr), `doctor` (check a modem step by step), `simulate` (the L610
simulator), `demo` (everything on one machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from bridge import __version__
from bridge.errors import BridgeError

DEFAULT_CONFIG = "/etc/mqtt-coap-bridge/config.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-coap-bridge",
        description="Carry CoAP requests from MQTT to CoAP servers through a Fibocom L610 modem.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    logging_options = argparse.ArgumentParser(add_help=False)
    logging_options.add_argument(
        "--log-format", choices=["text", "json"], help="log line format (default: from config)"
    )
    logging_options.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: from config)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", parents=[logging_options], help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    run.add_argument("--trace-at", metavar="FILE", help="write the AT transcript to FILE")

    check = verbs.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("-c", "--config", dest="config_option", help="config file")
    check.add_argument("config", nargs="?", help=f"config file (default {DEFAULT_CONFIG})")

    request = verbs.add_parser(
        "request", help="publish one CoAP request over MQTT and print the answer"
    )
    request.add_argument("uri", help="coap://host[:port]/path or coap://<server alias>/path")
    request.add_argument("-m", "--method", default="GET", help="CoAP method (default GET)")
    request.add_argument("-c", "--config", help="take broker and base topic from this config")
    request.add_argument("-H", "--host", help="MQTT broker host (default localhost)")
    request.add_argument("-p", "--port", type=int, help="MQTT broker port (default 1883)")
    request.add_argument("-t", "--base-topic", help="bridge base topic")
    request.add_argument("-V", "--protocol", choices=["5", "3.1.1"], help="MQTT protocol")
    request.add_argument("-u", "--username", help="MQTT user name")
    request.add_argument("-P", "--password-file", help="file holding the MQTT password")
    request.add_argument("-d", "--payload", help="request payload (text, or JSON with -j)")
    request.add_argument("-j", "--json", action="store_true", help="payload is JSON")
    request.add_argument("--content-format", help="content format of the payload")
    request.add_argument("--accept", help="content format wanted in the answer")
    request.add_argument("--non", action="store_true", help="send as NON instead of CON")
    request.add_argument("--observe", action="store_true", help="stream notifications")
    request.add_argument("--timeout", type=float, help="CoAP exchange timeout in seconds")
    request.add_argument(
        "-W", "--wait", type=float, default=60.0, help="seconds to wait for an answer (60)"
    )
    request.add_argument("--id", help="request id (default: random)")
    request.add_argument(
        "--pool", action="store_true", help="send to the fleet pool (MQTT 5) instead"
    )
    request.add_argument(
        "--pool-topic", help="the pool's topic (default: the config's, else coap-bridge/pool)"
    )
    request.add_argument(
        "--retry", type=int, default=0, metavar="N", help="republish up to N times (same id)"
    )
    request.add_argument(
        "--retry-after",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds without an answer before a republish (5)",
    )

    from bridge.tools.doctor import add_arguments as add_doctor_arguments

    add_doctor_arguments(verbs.add_parser("doctor", help="check a modem step by step"))

    # Listed for --help only: main() hands `simulate ...` to the simulator's own parser.
    verbs.add_parser("simulate", help="run the L610 simulator on a pseudo-terminal (see --help)")

    demo = verbs.add_parser("demo", parents=[logging_options], help="run a self-contained demo")
    demo.add_argument("--no-wait", action="store_true", help="exit after the round trips")
    return parser


def _check_config(path: str) -> int:
    from bridge.config import describe, load_config

    try:
        settings = load_config(path)
    except BridgeError as exc:
        problems = getattr(exc, "problems", [str(exc)])
        print(f"{path}: invalid configuration:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(describe(settings))
    return 0


def _request(args: argparse.Namespace) -> int:
    from bridge.mqtt.brokers import BrokerAddress, parse_broker_address
    from bridge.tools.rr import BrokerTarget, RequestInputError, RequestJob, run_request

    target = BrokerTarget()
    base_topic = "coap-bridge"
    pool_topic = "coap-bridge/pool"
    if args.config:
        from bridge.config import load_config, load_password

        settings = load_config(args.config)
        mqtt = settings.mqtt
        broker = (
            parse_broker_address(mqtt.hosts[0])
            if mqtt.hosts
            else BrokerAddress(mqtt.host, mqtt.port)
        )
        target = BrokerTarget(
            host=broker.host,
            port=broker.port,
            protocol=5 if str(mqtt.protocol) == "5" else 4,
            username=mqtt.username,
            password=load_password(settings) or "",
            tls=mqtt.tls.enabled,
            ca_file=str(mqtt.tls.ca_file or ""),
            cert_file=str(mqtt.tls.cert_file or ""),
            key_file=str(mqtt.tls.key_file or ""),
        )
        base_topic = mqtt.base_topic
        pool_topic = mqtt.pool_topic
    password = target.password
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise RequestInputError(
                f"cannot read the password file {args.password_file} (-P): {exc}"
            ) from None
    target = BrokerTarget(
        host=args.host or target.host,
        port=args.port or target.port,
        protocol=(5 if args.protocol == "5" else 4) if args.protocol else target.protocol,
        username=args.username or target.username,
        password=password,
        tls=target.tls,
        ca_file=target.ca_file,
        cert_file=target.cert_file,
        key_file=target.key_file,
    )
    request: dict[str, object] = {
        "id": args.id or uuid.uuid4().hex[:16],
        "method": args.method.upper(),
        "uri": args.uri,
    }
    request["type"] = "NON" if args.non else "CON"
    if args.payload is not None:
        if args.json:
            try:
                request["payload"] = json.loads(args.payload)
            except ValueError as exc:
                raise RequestInputError(f"the payload (-d) is not valid JSON (-j): {exc}") from None
            request["payload_encoding"] = "json"
            request["content_format"] = "application/json"
        else:
            request["payload"] = args.payload
            request["payload_encoding"] = "text"
            request["content_format"] = "text/plain;charset=utf-8"
    for key in ("content_format", "accept", "timeout"):
        value = getattr(args, key)
        if value is not None:
            request[key] = value
    if args.observe:
        request["observe"] = True
    job = RequestJob(
        base_topic=args.base_topic or base_topic,
        request=request,
        wait=args.wait,
        stream=args.observe,
        retries=max(args.retry, 0),
        retry_after=args.retry_after,
        pool_topic=(args.pool_topic or pool_topic) if args.pool else None,
    )
    return run_request(target, job)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["simulate"]:
        from bridge.simulator.cli import run as run_simulator

        return run_simulator(arguments[1:])
    args = _parser().parse_args(arguments)
    try:
        if args.verb == "check-config":
            return _check_config(args.config_option or args.config or DEFAULT_CONFIG)
        if args.verb == "request":
            from bridge.tools.rr import RequestToolError

            try:
                return _request(args)
            except RequestToolError as exc:
                print(f"mqtt-coap-bridge request: {exc}", file=sys.stderr)
                return exc.exit_status
        if args.verb == "run":
            from bridge.service import run_daemon

            return run_daemon(
                args.config,
                log_format=args.log_format,
                log_level=args.log_level,
                trace_at=args.trace_at,
            )
        if args.verb == "doctor":
            from bridge.tools.doctor import run_doctor

            return run_doctor(args)
        if args.verb == "demo":
            from bridge.tools.demo import run_demo

            return run_demo(
                log_format=args.log_format, log_level=args.log_level, wait=not args.no_wait
            )
    except BridgeError as exc:
        print(f"mqtt-coap-bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled verb {args.verb}")
