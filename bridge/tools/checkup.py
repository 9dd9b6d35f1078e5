"""The steps of `mqtt-coap-bridge doctor` on one modem port: `await Doctor(options).run()`.

Each step records the commands, the modem's reply, the time taken, a verdict and, for
a failure, what to do; steps that need a failed one are reported as not run. Verdicts
and remedies: `bridge.tools.diagnosis`; the command line: `bridge.tools.doctor`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field

from bridge.at.engine import AtEngine
from bridge.errors import AtTimeout, ModemError, PortLost, UnexpectedReply
from bridge.modem import ts27007
from bridge.modem.l610 import codec
from bridge.tools import diagnosis
from bridge.tools.diagnosis import Finding, Verdict

COMMAND_TIMEOUT = 5.0
PING_TRIES = 3
POLL_INTERVAL = 1.0
REGISTRATION_QUERIES = ("+CEREG:", "+CGREG:", "+CREG:")


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    port: str
    baudrate: int = 115200
    apn: str = ""
    server: tuple[str, int] | None = None
    timeout: float = 60.0
    trace_file: str | None = None


@dataclass(slots=True)
class Exchange:
    """One command and what came back for it (final result and later URCs included)."""

    command: str
    reply: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    name: str
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0
    verdict: Verdict = Verdict.NOT_RUN
    detail: str = ""
    remedy: str = ""

    @property
    def commands(self) -> list[str]:
        return [exchange.command for exchange in self.exchanges]

    @property
    def reply(self) -> list[str]:
        """The reply to the last command."""
        return self.exchanges[-1].reply if self.exchanges else []

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "verdict": self.verdict.value, "seconds": round(self.seconds, 3)}


@dataclass(slots=True)
class Report:
    options: DoctorOptions
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(step.verdict.passed for step in self.steps)

    @property
    def failed_step(self) -> Step | None:
        return next((step for step in self.steps if step.verdict is Verdict.FAIL), None)

    def as_dict(self) -> dict[str, object]:
        return {
            "port": self.options.port,
            "baudrate": self.options.baudrate,
            "passed": self.passed,
            "steps": [step.as_dict() for step in self.steps],
        }


class _Failed(Exception):
    """The running step failed: its finding is already recorded."""


class Doctor:
    """Runs the steps on one port; `await Doctor(options).run()` returns the `Report`."""

    def __init__(self, options: DoctorOptions) -> None:
        self.options = options
        self.report = Report(options)
        self._at: AtEngine | None = None
        self._step = Step("")
        self._urcs: dict[str, asyncio.Queue[str]] = {
            prefix: asyncio.Queue()
            for prefix in (codec.MIPCALL_PREFIX, codec.COAP_DATA_PREFIX, codec.COAP_CLOSE_PREFIX)
        }

    async def run(self) -> Report:
        async with AsyncExitStack() as stack:
            server = self.options.server
            coap = ("coap open", "coap ping", "coap close") if server else ()
            later = ("sim", "registration", "signal", "pdp", "instances", *coap)
            if not await self._run("port", lambda: self._open_port(stack)):
                return self._not_run("port", "at", "echo", "errors", "identity", *later)
            if not await self._run("at", self._ping):
                return self._not_run("at", "echo", "errors", "identity", *later)
            await self._run("echo", self._echo)
            await self._run("errors", self._error_reporting)
            await self._run("identity", self._identity)
            sim = await self._run("sim", self._sim)
            registered = sim and await self._run("registration", self._registration)
            await self._run("signal", self._signal)
            pdp = registered and await self._run("pdp", self._pdp)
            free = sim and await self._run("instances", self._instances)
            if not sim:
                self._not_run("sim", "registration", "pdp", "instances", *coap)
            elif not registered:
                self._not_run("registration", "pdp")
            if server is not None and pdp and free:
                await self._coap_ping(*server)
            elif coap and sim:
                self._not_run("pdp" if not pdp else "instances", *coap)
        return self.report

    # -- step machinery ----------------------------------------------------------------

    async def _run(self, name: str, check: Callable[[], Awaitable[Finding]]) -> bool:
        step = self._step = Step(name)
        self.report.steps.append(step)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            finding = await check()
        except _Failed:
            finding = Finding(step.verdict, step.detail, step.remedy)
        except PortLost as exc:
            finding = Finding(Verdict.FAIL, str(exc), "the port went away: check the USB cable")
        except AtTimeout as exc:
            finding = Finding(Verdict.FAIL, str(exc), "the modem stopped answering: power-cycle it")
        except UnexpectedReply as exc:
            finding = Finding(
                Verdict.FAIL, str(exc), "unexpected answer: attach --trace to a report"
            )
        step.seconds = loop.time() - started
        step.verdict, step.detail, step.remedy = finding.verdict, finding.detail, finding.remedy
        return finding.verdict.passed

    def _not_run(self, needed: str, *names: str) -> Report:
        """Record `names` (those not recorded yet) as not run for want of step `needed`."""
        done = {step.name for step in self.report.steps}
        for name in names:
            if name not in done:
                self.report.steps.append(Step(name, detail=f"needs step {needed!r} to pass"))
        return self.report

    def _fail(self, detail: str, remedy: str) -> _Failed:
        self._step.verdict, self._step.detail, self._step.remedy = Verdict.FAIL, detail, remedy
        return _Failed()

    async def _command(self, command: str, limit: float = COMMAND_TIMEOUT) -> list[str]:
        """Run `command`, keeping it and its reply (final result included) in the step."""
        assert self._at is not None
        exchange = Exchange(command)
        self._step.exchanges.append(exchange)
        try:
            lines = await self._at.command(command, timeout=limit)
        except ModemError as exc:
            exchange.reply.append(exc.result)
            raise
        exchange.reply.extend([*lines, "OK"])
        return lines

    # -- the steps ---------------------------------------------------------------------

    async def _open_port(self, stack: AsyncExitStack) -> Finding:
        options = self.options
        self._step.exchanges.append(Exchange(f"open {options.port} at {options.baudrate} baud"))
        at = AtEngine(
            options.port,
            baudrate=options.baudrate,
            command_timeout=COMMAND_TIMEOUT,
            trace_file=options.trace_file,
        )
        try:
            self._at = await stack.enter_async_context(at)
        except PortLost as exc:
            raise self._fail(
                str(exc),
                f"check the device path {options.port} (ls -l /dev/serial/by-id/), that the "
                "option driver is loaded (lsmod | grep option) and that you may use it "
                "(group dialout)",
            ) from None
        for prefix, queue in self._urcs.items():
            self._at.add_urc_handler(prefix, queue.put_nowait)
        return Finding(Verdict.OK, f"opened {options.port} at {options.baudrate} baud")

    async def _ping(self) -> Finding:
        for _ in range(PING_TRIES):
            try:
                await self._command("AT", limit=1.0)
            except AtTimeout:
                continue
            except ModemError:
                pass  # an error answer still proves the modem listens
            return Finding(Verdict.OK, "the modem answers AT")
        raise self._fail(
            f"no answer to AT ({PING_TRIES} tries of 1 s)",
            "this may not be the AT port (the L610 has several, see the README's 'First run "
            "on real hardware'), the baud rate may be wrong (--baud), or the modem is off",
        )

    async def _echo(self) -> Finding:
        assert self._at is not None
        await self._command("ATE0")
        # The engine counts the echoed command lines (of AT and ATE0 itself).
        state = "was on (as after a reset); now off" if self._at.stats.echoes else "off"
        return Finding(Verdict.OK, f"echo {state}")

    async def _error_reporting(self) -> Finding:
        try:
            await self._command("AT+CMEE=2")
        except ModemError:
            await self._command("AT+CMEE=1")
            return Finding(Verdict.OK, "numeric errors only (firmware without AT+CMEE=2)")
        return Finding(Verdict.OK, "errors in words (AT+CMEE=2)")

    async def _identity(self) -> Finding:
        info = await self._command("ATI")
        imei = ts27007.parse_identity(await self._command("AT+CGSN"), "+CGSN:")
        model = next((line for line in info if "L610" in line), None)
        described = "; ".join(info if imei in "".join(info) else [*info, f"IMEI {imei}"])
        if model is None:
            return Finding(
                Verdict.WARN, described, "this is not an L610: the bridge only drives the L610"
            )
        return Finding(Verdict.OK, described)

    async def _sim(self) -> Finding:
        try:
            state = ts27007.parse_cpin(await self._command("AT+CPIN?"))
        except ModemError as exc:
            return diagnosis.sim_finding(None, exc.code, exc.text or exc.result)
        return diagnosis.sim_finding(state, None, "")

    async def _registration(self) -> Finding:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.options.timeout
        while True:
            self._step.exchanges.clear()  # the last round of queries tells the state
            states = {
                prefix[:-1]: await self._registration_state(prefix)
                for prefix in REGISTRATION_QUERIES
            }
            finding = diagnosis.registration_finding(states, round(loop.time() - started, 1))
            if finding.verdict is Verdict.OK or loop.time() >= deadline:
                if finding.verdict is not Verdict.OK:
                    finding = diagnosis.registration_finding(states, self.options.timeout)
                return finding
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))

    async def _registration_state(self, prefix: str) -> int | None:
        try:
            return ts27007.parse_registration(await self._command(f"AT{prefix[:-1]}?"), prefix)
        except ModemError:
            return None  # firmware without this radio technology

    async def _signal(self) -> Finding:
        lines = await self._command("AT+CSQ")
        text = next((line for line in lines if line.startswith("+CSQ:")), "")
        ts27007.parse_csq(lines)  # raises UnexpectedReply for an unreadable answer
        return diagnosis.signal_finding(int(text[len("+CSQ:") :].split(",")[0]))

    async def _pdp(self) -> Finding:
        state = await self._pdp_state()
        if state is not None:
            return Finding(Verdict.OK, f"PDP context active, IP {state}")
        apn = f"APN {self.options.apn!r}" if self.options.apn else "the default APN"
        remedy = (
            f"could not activate a PDP context with {apn}: check the APN (--apn) with the operator"
        )
        try:
            await self._command(codec.format_pdp_activate(self.options.apn))
        except ModemError as exc:
            raise self._fail(f"activation refused: {exc.text or exc.result}", remedy) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout
        while loop.time() < deadline:
            try:
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._urcs[codec.MIPCALL_PREFIX].get()
            except TimeoutError:
                pass  # some firmware prints nothing: ask
            state = await self._pdp_state()
            if state is not None:
                return Finding(Verdict.OK, f"PDP context activated with {apn}, IP {state}")
        raise self._fail(f"no PDP context within {self.options.timeout:g} s", remedy)

    async def _pdp_state(self) -> str | None:
        """The IP address of the active context ("?" when none is given), None if inactive."""
        lines = await self._command("AT+MIPCALL?")
        line = next((line for line in lines if line.startswith(codec.MIPCALL_PREFIX)), None)
        if line is None:
            raise UnexpectedReply(f"no +MIPCALL: line in the answer to AT+MIPCALL?: {lines!r}")
        state = codec.parse_mipcall(line)
        return (state.ip or "?") if state.active else None

    async def _instances(self) -> Finding:
        try:
            free = codec.parse_free_ids(await self._command("AT+GTCOAPOPEN?"))
        except ModemError:
            raise self._fail(
                "AT+GTCOAPOPEN? is refused: this firmware has no GTCOAP (CoAP) commands",
                "the bridge needs an L610 firmware with the CoAP AT commands: ask Fibocom or "
                "your distributor for one",
            ) from None
        if not free:
            raise self._fail(
                "no free CoAP instance",
                "another program holds every instance: stop it, or restart the modem",
            )
        return Finding(Verdict.OK, f"{len(free)} free CoAP instance(s): {free}")

    async def _coap_ping(self, host: str, port: int) -> None:
        opened: list[int] = []

        async def open_instance() -> Finding:
            try:
                opened.append(codec.parse_open(await self._command(codec.format_open(host, port))))
            except ModemError:
                raise self._fail(
                    f"AT+GTCOAPOPEN to {host}:{port} refused",
                    "the modem cannot reach or resolve the server: check the host name",
                ) from None
            return Finding(Verdict.OK, f"instance {opened[0]} open to {host}:{port}")

        if not await self._run("coap open", open_instance):
            self._not_run("coap open", "coap ping", "coap close")
            return
        await self._run("coap ping", lambda: self._ping_server(opened[0], host, port))
        await self._run("coap close", lambda: self._close(opened[0]))

    async def _ping_server(self, coap_id: int, host: str, port: int) -> Finding:
        message_id = random.randrange(1 << 16)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await self._command(codec.format_send(coap_id, diagnosis.coap_ping(message_id)))
        queue = self._urcs[codec.COAP_DATA_PREFIX]
        try:
            async with asyncio.timeout(self.options.timeout):
                while True:
                    line = await queue.get()
                    datagram = codec.parse_coap_data(line)
                    self._step.reply.append(line)  # the SEND's exchange
                    if datagram.coap_id == coap_id and diagnosis.is_reset_for(
                        datagram.data, message_id
                    ):
                        break
        except TimeoutError:
            raise self._fail(
                f"no RST from {host}:{port} within {self.options.timeout:g} s",
                "check the server's address and port, that it serves CoAP over UDP, and that "
                "the operator's network lets UDP through to it",
            ) from None
        rtt = (loop.time() - sent) * 1000
        return Finding(
            Verdict.OK, f"RST from {host}:{port} after {rtt:.0f} ms: the server is reachable"
        )

    async def _close(self, coap_id: int) -> Finding:
        await self._command(codec.format_close(coap_id))
        async with asyncio.timeout(COMMAND_TIMEOUT):
            confirmation = await self._urcs[codec.COAP_CLOSE_PREFIX].get()
        self._step.reply.append(confirmation)
        return Finding(Verdict.OK, f"instance {coap_id} closed")
