"""A faithful, strict Fibocom L610 on a pseudo-terminal (see README.md in this package).

`L610Simulator` runs in-process (`async with L610Simulator() as sim: sim.port_path`),
`bridge.simulator.cli:run` runs it as a program, `SimulatorControl` drives the control
channel of one running elsewhere. The AT dialect is documented in
`bridge.simulator.dialect`, the control protocol in `bridge.simulator.control`.
"""

from bridge.simulator.control import ControlError, SimulatorControl
from bridge.simulator.simulator import L610Simulator
from bridge.simulator.stats import SimulatorStats

__all__ = ["ControlError", "L610Simulator", "SimulatorControl", "SimulatorStats"]
