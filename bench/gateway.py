"""One gateway under test: a simulator, the daemon on its pty, and a driver on the broker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.driver import DriverError, MqttDriver, RequestFactory, RunResult
from bench.stack import (
    Daemon,
    DaemonSettings,
    LinkProfile,
    Simulator,
    StackError,
    daemon_config,
    started,
)

ONLINE_TIMEOUT = 60.0


@dataclass(frozen=True)
class LineUse:
    """Bytes on the simulated serial line during a run (the simulator's pty counters)."""

    to_modem: int
    from_modem: int
    # AT command lines the simulator interpreted, and how many of them sent a datagram.
    commands: int = 0
    sends: int = 0

    @property
    def other_commands(self) -> int:
        return self.commands - self.sends

    @property
    def busier(self) -> int:
        return max(self.to_modem, self.from_modem)


@dataclass
class Gateway:
    simulator: Simulator
    daemon: Daemon
    driver: MqttDriver

    def measure(
        self, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, LineUse]:
        """One closed-loop run, with the pty bytes it caused."""
        before = self.simulator.stats()
        result = self.driver.closed_loop(count, in_flight, make_request).run(
            timeout=120 + count / 5
        )
        after = self.simulator.stats()
        self.daemon.check_alive()
        line = LineUse(
            to_modem=after["bytes_in"] - before["bytes_in"],
            from_modem=after["bytes_out"] - before["bytes_out"],
            commands=after["commands"] - before["commands"],
            sends=after["datagrams_out"] - before["datagrams_out"],
        )
        return result, line

    def warm_up(self, count: int, in_flight: int, make_request: RequestFactory) -> None:
        """Requests whose figures are thrown away: imports, instance opens, caches."""
        self.driver.closed_loop(count, in_flight, make_request).run(timeout=120)


@contextlib.contextmanager
def gateway(
    workdir: Path,
    mqtt_port: int,
    profile: LinkProfile,
    settings: DaemonSettings,
    tag: str,
    profile_dir: Path | None = None,
) -> Iterator[Gateway]:
    """Start a simulator and a daemon, wait until the daemon reports online.

    With `profile_dir`, the daemon runs under cProfile and leaves its statistics there.
    """
    simulator = Simulator(workdir, profile, tag)
    with started(simulator):
        config = daemon_config(simulator.port_path, mqtt_port, settings)
        daemon = Daemon(workdir, config, tag, profile_dir)
        with MqttDriver(mqtt_port) as driver:
            driver.clear_status()
            with started(daemon):
                try:
                    driver.wait_online(ONLINE_TIMEOUT, daemon.check_alive)
                except DriverError as exc:
                    raise StackError(f"{exc}; daemon log:\n{daemon.log_tail()}") from exc
                yield Gateway(simulator, daemon, driver)
