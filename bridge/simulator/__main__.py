import sys

from bridge.simulator.cli import run

raise SystemExit(run(sys.argv[1:]))
