"""The processes of a bench run: broker, CoAP servers, simulator and daemon.

Every child runs in its own session (so a terminal Ctrl-C reaches only the harness,
which then stops the children in reverse start order) and, through `setpriv
--pdeathsig`, gets SIGTERM from the kernel if the harness itself dies without cleaning
up. `contextlib.ExitStack` owns the lifetimes: leaving the `with` always stops them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from bridge.simulator.control import SimulatorControl
from bridge.tools.loopback import free_port, mosquitto_binary, wait_for_tcp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT = 10.0


class StackError(RuntimeError):
    """A process of the bench stack could not be started or misbehaved."""


def stable_tcp_port() -> int:
    """A free port below the ephemeral range, for a server that will be restarted.

    While such a server is down, clients reconnecting in a tight loop may be given the
    server's own port as their source port and connect to themselves (TCP simultaneous
    open), which then blocks the restart with EADDRINUSE. Ports outside the range the
    kernel hands out as source ports cannot be taken that way.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
        ephemeral_low = int(ports.read().split()[0])
    candidates = list(range(max(1024, ephemeral_low - 12_000), ephemeral_low))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError(f"no free TCP port below {ephemeral_low}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may contain spaces: split after its closing paren.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise StackError(f"process {pid} has no VmRSS (exited?)")


def _pdeathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def terminate(process: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM `process` if it runs, wait `timeout` s, then SIGKILL it; True if killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False


@dataclass
class Child:
    """One child process with its log file; `stop()` is idempotent.

    `stdout` is the log too unless given; `env` replaces the environment when given."""

    name: str
    args: list[str]
    log_path: Path
    stdout: int | IO[Any] | None = subprocess.DEVNULL
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[str] | None = field(default=None, init=False)

    def start(self) -> subprocess.Popen[str]:
        with self.log_path.open("a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [*_pdeathsig_prefix(), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log if self.stdout is None else self.stdout,
                stderr=log,
                text=True,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        return self.process

    @property
    def pid(self) -> int:
        if self.process is None:
            raise StackError(f"{self.name} is not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise StackError(f"{self.name} exited (status {code}); log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if terminate(self.process, STOP_TIMEOUT):
            print(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT:g} s; killed it", file=sys.stderr)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye, as a crash or a power cut would end it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Mosquitto:
    """A private broker on a free loopback port; `restart()` keeps port and persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = stable_tcp_port()
        conf = workdir / "mosquitto.conf"
        # Persistence makes a restart keep sessions and queued QoS 1 messages, as a
        # production broker would; `user` stops a root-started broker from switching to
        # the `mosquitto` user, which could not write its database in our work dir.
        # TCP_NODELAY: without it Nagle + delayed ACK add 40 ms stalls to small answers.
        # The in-flight window stays at the broker's default: MQTT 5 clients raise it
        # with Receive Maximum, which is the daemon's job.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 20000\n"
            "set_tcp_nodelay true\n"
        )
        self._child = Child(
            "mosquitto", [mosquitto_binary(), "-c", str(conf)], workdir / "mosquitto.log"
        )

    @property
    def pid(self) -> int:
        return self._child.pid

    def start(self) -> None:
        self._child.start()
        wait_for_tcp(self.port, 10)

    def stop(self) -> None:
        self._child.stop()

    def restart(self, down_seconds: float) -> None:
        self._child.stop()
        time.sleep(down_seconds)
        self.start()


class CoapServers:
    """`bench.coap_server` on `count` free UDP ports, one process."""

    def __init__(self, workdir: Path, count: int, oscore_context: Path | None = None) -> None:
        self.ports = [free_port(socket.SOCK_DGRAM) for _ in range(count)]
        args = [sys.executable, "-m", "bench.coap_server"]
        for port in self.ports:
            args += ["--port", str(port)]
        if oscore_context is not None:
            args += ["--oscore-context", str(oscore_context)]
        self._child = Child("coap server", args, workdir / "coap-server.log", subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self._child.pid

    def start(self) -> None:
        process = self._child.start()
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise StackError(f"the CoAP server did not start:\n{self._child.log_tail()}")

    def stop(self) -> None:
        self._child.stop()


@dataclass(frozen=True)
class LinkProfile:
    """What the simulated modem and cellular network do to every byte and datagram."""

    baud: int | None = None
    latency_ms: float = 0.0
    loss: float = 0.0
    instances: int = 4
    seed: int = 1

    def describe(self) -> str:
        line = f"{self.baud} baud" if self.baud else "unthrottled"
        return f"{line}, +{self.latency_ms:g} ms, loss {self.loss:g}"


class Simulator:
    """The L610 simulator process with its control socket."""

    def __init__(self, workdir: Path, profile: LinkProfile, tag: str) -> None:
        self.control_path = workdir / f"sim-{tag}.sock"
        # The simulator package's own entry point: the same `run(argv)` as the
        # `simulate` verb, without the top-level CLI's argument handling in between.
        args = [sys.executable, "-m", "bridge.simulator", "--control", str(self.control_path)]
        args += ["--instances", str(profile.instances), "--seed", str(profile.seed)]
        if profile.baud:
            args += ["--baud", str(profile.baud)]
        if profile.latency_ms:
            args += ["--latency-ms", f"{profile.latency_ms:g}"]
        if profile.loss:
            args += ["--loss", f"{profile.loss:g}"]
        self._child = Child("simulator", args, workdir / f"sim-{tag}.log", subprocess.PIPE)
        self.port_path = ""

    @property
    def pid(self) -> int:
        return self._child.pid

    def start(self) -> None:
        process = self._child.start()
        assert process.stdout is not None
        self.port_path = process.stdout.readline().strip()
        if not self.port_path:
            raise StackError(f"the simulator printed no port path:\n{self._child.log_tail()}")
        deadline = time.monotonic() + 10
        while not self.control_path.exists():
            if time.monotonic() > deadline:
                raise StackError(f"the simulator opened no control socket at {self.control_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._child.stop()

    @property
    def control(self) -> SimulatorControl:
        """Fault injection and counters (see bridge/simulator/control.py)."""
        return SimulatorControl(str(self.control_path), timeout=10.0)

    def stats(self) -> dict[str, int]:
        return self.control.stats()


@dataclass(frozen=True)
class DaemonSettings:
    """The parts of the daemon's config a bench case varies; the rest is config-example."""

    servers: Mapping[str, int]  # alias -> UDP port on 127.0.0.1
    # alias -> OSCORE context directory; such an alias lets plaintext through to its
    # host:port too (require_oscore: false), since plaintext aliases share the server.
    oscore: Mapping[str, Path] = field(default_factory=dict)
    max_in_flight: int = 512
    max_instances: int = 4
    default_timeout: float = 30.0
    dedupe_window: int = 600
    log_level: str = "info"


BASE_TOPIC = "coap-bridge/bench"


# The names of the modems of a several-modem config, in the order of their ptys.
MODEM_NAMES = tuple("abcdefgh")


def modem_section(pty_paths: Sequence[str], max_instances: int) -> str:
    """`modem:` for one pty, else a `modems:` list naming them a, b, ..."""
    if not pty_paths or len(pty_paths) > len(MODEM_NAMES):
        raise StackError(f"{len(pty_paths)} modems: the bench names 1 to {len(MODEM_NAMES)}")
    keys = (
        "baudrate: 115200\n",
        "command_timeout: 5\n",
        f"max_instances: {max_instances}\n",
        "instance_idle_close: 300\n",
    )
    if len(pty_paths) == 1:
        return f"modem:\n  port: {pty_paths[0]}\n" + "".join(f"  {key}" for key in keys)
    return "modems:\n" + "".join(
        f"  - name: {name}\n    port: {path}\n" + "".join(f"    {key}" for key in keys)
        for name, path in zip(MODEM_NAMES, pty_paths, strict=False)
    )


def daemon_config(pty_path: str | Sequence[str], mqtt_port: int, settings: DaemonSettings) -> str:
    """The daemon's config; several ptys make a `modems:` list (see `modem_section`)."""
    pty_paths = [pty_path] if isinstance(pty_path, str) else list(pty_path)
    servers = "".join(
        f"    {alias}:\n      host: 127.0.0.1\n      port: {port}\n"
        + (
            f"      oscore:\n        context_dir: {settings.oscore[alias]}\n"
            "      require_oscore: false\n"
            if alias in settings.oscore
            else ""
        )
        for alias, port in settings.servers.items()
    )
    return (
        "gateway_id: bench\n"
        f"{modem_section(pty_paths, settings.max_instances)}"
        "mqtt:\n"
        "  host: 127.0.0.1\n"
        f"  port: {mqtt_port}\n"
        "  protocol: 5\n"
        f"  base_topic: {BASE_TOPIC}\n"
        "  keepalive: 30\n"
        "  session_expiry: 86400\n"
        "coap:\n"
        "  servers:\n"
        f"{servers}"
        f"  default_timeout: {settings.default_timeout:g}\n"
        "  max_timeout: 300\n"
        f"  max_in_flight: {settings.max_in_flight}\n"
        f"dedupe_window: {settings.dedupe_window}\n"
        "health_interval: 60\n"
        "logging:\n"
        f"  level: {settings.log_level}\n"
        "  format: text\n"
    )


class Daemon:
    """`python -m bridge run -c <config>`; its log goes to a file in the work dir."""

    def __init__(
        self, workdir: Path, config_text: str, tag: str, profile_dir: Path | None = None
    ) -> None:
        config = workdir / f"daemon-{tag}.yaml"
        config.write_text(config_text)
        args = [sys.executable, "-m", "bridge", "run", "-c", str(config)]
        if profile_dir is not None:
            # cProfile writes its file when the daemon returns from a graceful SIGTERM.
            profile = profile_dir / f"daemon-{tag}.prof"
            args[1:1] = ["-m", "cProfile", "-o", str(profile)]
        self._child = Child("daemon", args, workdir / f"daemon-{tag}.log")

    @property
    def pid(self) -> int:
        return self._child.pid

    def start(self) -> None:
        self._child.start()

    def stop(self) -> None:
        self._child.stop()

    def kill(self) -> None:
        self._child.kill()

    def alive(self) -> bool:
        return self._child.alive()

    def check_alive(self) -> None:
        self._child.check_alive()

    def log_tail(self, lines: int = 30) -> str:
        return self._child.log_tail(lines)


@contextlib.contextmanager
def started(*parts: Mosquitto | CoapServers | Simulator | Daemon) -> Iterator[None]:
    """Start `parts` in order; stop the started ones in reverse order, whatever happens."""
    with contextlib.ExitStack() as stack:
        for part in parts:
            stack.callback(part.stop)
            part.start()
        yield


def sigterm_as_interrupt() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `with` block stops its children."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
