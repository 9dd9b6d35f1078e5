"""One gateway under test: a simulator per modem, the daemon on their ptys, and a driver on
the broker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.driver import DriverError, MqttDriver, RequestFactory, RunResult
from bench.stack import (
    MODEM_NAMES,
    Daemon,
    DaemonSettings,
    LinkProfile,
    Simulator,
    StackError,
    daemon_config,
    started,
)
from bridge.config.modems import SINGLE_MODEM_NAME

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

    def __add__(self, other: LineUse) -> LineUse:
        return LineUse(
            self.to_modem + other.to_modem,
            self.from_modem + other.from_modem,
            self.commands + other.commands,
            self.sends + other.sends,
        )

    @staticmethod
    def between(before: Mapping[str, int], after: Mapping[str, int]) -> LineUse:
        """What a run added to one simulator's counters (`SimulatorControl.stats()`)."""
        return LineUse(
            to_modem=after["bytes_in"] - before["bytes_in"],
            from_modem=after["bytes_out"] - before["bytes_out"],
            commands=after["commands"] - before["commands"],
            sends=after["datagrams_out"] - before["datagrams_out"],
        )


def total(lines: Sequence[LineUse]) -> LineUse:
    return sum(lines, LineUse(0, 0))


def send_shares(lines: Sequence[LineUse]) -> list[float]:
    """Each line's share of the datagrams sent on all of them (NaN where none were)."""
    sends = sum(line.sends for line in lines)
    return [line.sends / sends if sends else float("nan") for line in lines]


@dataclass
class Gateway:
    simulators: tuple[Simulator, ...]  # one per modem, in the order of the config
    daemon: Daemon
    driver: MqttDriver

    @property
    def simulator(self) -> Simulator:
        """The (first) modem's simulator."""
        return self.simulators[0]

    @property
    def modem_names(self) -> tuple[str, ...]:
        """The modems' names in the daemon config (`modem` alone for a one-modem config)."""
        if len(self.simulators) == 1:
            return (SINGLE_MODEM_NAME,)
        return MODEM_NAMES[: len(self.simulators)]

    def measure(
        self, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, LineUse]:
        """One closed-loop run, with the pty bytes it caused (on every modem's line)."""
        result, lines = self.measure_lines(count, in_flight, make_request)
        return result, total(lines)

    def measure_lines(
        self, count: int, in_flight: int, make_request: RequestFactory
    ) -> tuple[RunResult, list[LineUse]]:
        """One closed-loop run, with the pty bytes it caused on each modem's line."""
        before = [simulator.stats() for simulator in self.simulators]
        result = self.driver.closed_loop(count, in_flight, make_request).run(
            timeout=120 + count / 5
        )
        after = [simulator.stats() for simulator in self.simulators]
        self.daemon.check_alive()
        return result, [LineUse.between(*pair) for pair in zip(before, after, strict=True)]

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
    *,
    modems: int = 1,
) -> Iterator[Gateway]:
    """Start `modems` simulators (each with `profile`) and a daemon on their ptys, wait
    until the daemon reports online (one modem up: see `Gateway.modem_names` to wait for
    the others).

    With `profile_dir`, the daemon runs under cProfile and leaves its statistics there.
    """
    tags = [tag] if modems == 1 else [f"{tag}{name}" for name in MODEM_NAMES[:modems]]
    simulators = tuple(Simulator(workdir, profile, each) for each in tags)
    with started(*simulators):
        config = daemon_config([each.port_path for each in simulators], mqtt_port, settings)
        daemon = Daemon(workdir, config, tag, profile_dir)
        with MqttDriver(mqtt_port) as driver:
            driver.clear_status()
            with started(daemon):
                try:
                    driver.wait_online(ONLINE_TIMEOUT, daemon.check_alive)
                except DriverError as exc:
                    raise StackError(f"{exc}; daemon log:\n{daemon.log_tail()}") from exc
                yield Gateway(simulators, daemon, driver)
