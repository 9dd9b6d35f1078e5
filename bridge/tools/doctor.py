"""`mqtt-coap-bridge doctor`: checks one modem step by step and says what to fix.

Options from the command line, the config (`-c`, `--modem`) filling the rest; the
report as text or JSON; exit status 0 only when every step passed, 1 when one failed,
2 for a command line that cannot be used. The steps: `bridge.tools.checkup`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bridge.config import ModemSettings, Settings, load_config
from bridge.errors import BridgeError
from bridge.tools.checkup import Doctor, DoctorOptions, Report
from bridge.tools.diagnosis import Verdict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", help="the modem's AT port (default: from the config)")
    parser.add_argument("--baud", type=int, help="baud rate (default: config, else 115200)")
    parser.add_argument("--apn", help="APN for the PDP context (default: from the config)")
    parser.add_argument("--server", metavar="HOST:PORT", help="CoAP server to ping")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds for registration, PDP, ping (60)"
    )
    parser.add_argument("-c", "--config", help="take the modem from this config")
    parser.add_argument("--modem", metavar="NAME", help="which modem of the config")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--trace", metavar="FILE", help="write the AT transcript to FILE")


def options_from(args: argparse.Namespace) -> DoctorOptions:
    """The options from the command line, the config filling what it does not give."""
    port, baudrate, apn = args.port, args.baud, args.apn
    if args.config:
        modem = configured_modem(load_config(args.config), args.modem)
        port = port or modem.port
        baudrate = baudrate or modem.baudrate
        apn = modem.apn if apn is None else apn
    elif args.modem:
        raise DoctorUsageError("--modem NAME needs -c CONFIG")
    if not port:
        raise DoctorUsageError("give --port PORT, or -c CONFIG")
    if args.timeout <= 0:
        raise DoctorUsageError("--timeout must be positive")
    return DoctorOptions(
        port=port,
        baudrate=baudrate or 115200,
        apn=apn or "",
        server=None if args.server is None else parse_server(args.server),
        timeout=args.timeout,
        trace_file=args.trace,
    )


class DoctorUsageError(BridgeError):
    """The doctor's command line cannot be used as given."""


def configured_modem(settings: Settings, name: str | None) -> ModemSettings:
    """The modem `name` of the config (a `modem` section holds one, named "modem"); the
    first one when no name is given."""
    if name is None:
        return settings.modems[0]
    modem = settings.modem_named(name)
    if modem is None:
        names = [modem.name for modem in settings.modems]
        raise DoctorUsageError(f"no modem {name!r} in the config; it has {names}")
    return modem


def parse_server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DoctorUsageError(f"--server must be HOST:PORT (port 1-65535), not {text!r}")
    return host.strip("[]"), int(port)


def format_report(report: Report) -> str:
    options = report.options
    lines = [f"mqtt-coap-bridge doctor: {options.port} at {options.baudrate} baud"]
    for step in report.steps:
        mark = {Verdict.OK: "ok", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL"}.get(
            step.verdict, "--"
        )
        lines.append(f"[{mark:>4}] {step.name}: {step.detail} ({step.seconds:.2f} s)")
        for exchange in step.exchanges:
            lines.append(f"       > {exchange.command}")
            lines.extend(f"       < {line}" for line in exchange.reply)
        if step.remedy:
            lines.append(f"       what to do: {step.remedy}")
    failed = report.failed_step
    if failed is None and report.passed:
        lines.append("every step passed")
    elif failed is not None:
        lines.append(f"failed at step {failed.name!r}: {failed.remedy}")
    return "\n".join(lines)


def run_doctor(args: argparse.Namespace) -> int:
    """`mqtt-coap-bridge doctor`: 0 when every step passed, 1 otherwise, 2 for bad usage."""
    try:
        options = options_from(args)
        report = asyncio.run(Doctor(options).run())
    except BridgeError as exc:
        print(f"mqtt-coap-bridge doctor: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.passed else 1
