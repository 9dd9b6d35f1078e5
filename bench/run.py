"""`make bench`: throughput, latency, CPU and memory of the daemon, against the targets.

Sections (`--only` picks some):
- line: 115200 baud + 50 ms, small GETs, 1 vs 32 in flight, against the line limit
  computed from the bytes the simulator actually saw on its pty. The line limit is a
  steady rate, so the targets compare it with the throughput while the pipeline is full
  (the first and last window of answers left out: the first round trip, when nothing
  has come back yet, and the drain); the whole-run figure is printed too.
- cpu: unthrottled simulator, no added latency: end-to-end req/s, daemon CPU per 1,000
  requests, added latency, side by side with aiocoap talking UDP straight to the server,
  and the floors of the two libraries the daemon is built on (`bench.floors`).
- scaling: in flight 1/8/64/256 (on both links), payload 16 B/200 B/4 KiB and 1/4/16
  remotes over 4 instances (on the 115200-baud link), daemon RSS idle and after 10,000
  requests.
- oscore: unthrottled simulator, small GETs, 64 in flight, plaintext then OSCORE to the
  same server: bytes per exchange on the line and daemon CPU per 1,000 requests
  (`bench.oscore`).
- constrained: the daemon alone capped at 10 % of one core (a cgroup CPU quota; needs
  root, skipped with a message otherwise): share of the line limit at 115200 baud +
  50 ms, and req/s on the unthrottled link (`bench.cpucap`).
- modems: a daemon on two modems (two simulators, each 115200 baud + 50 ms) against one
  on one modem, small GETs at 64 in flight: throughput ratio and each modem's share of
  the requests (`bench.modems`).

Every case starts its own simulators and daemon (the link profile is a simulator
option); mosquitto and the CoAP server live for the whole run. The sections are in
`bench.sections` and `bench.modems`, what they share in `bench.harness`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import sections
from bench.harness import Bench
from bench.modems import modems
from bench.plot import plot_report, scaling_runs
from bench.report import render_table
from bench.stack import StackError, sigterm_as_interrupt, started
from bridge.tools.loopback import LoopbackError

# In the order of a full run.
SECTIONS: dict[str, Callable[[Bench], None]] = {
    "line": sections.line_bound,
    "cpu": sections.cpu_bound,
    "scaling": sections.scaling,
    "oscore": sections.oscore,
    "constrained": sections.constrained,
    "modems": modems,
}
RESULTS = Path(__file__).resolve().parent / "results"


def run(bench: Bench, names: Sequence[str]) -> None:
    """The sections `names`, with the broker and the CoAP servers up throughout."""
    with started(bench.mosquitto, bench.servers):
        for name in names:
            SECTIONS[name](bench)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs: a smoke check, not figures"
    )
    parser.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--json", type=Path, help="write the JSON report here (default bench/results/<time>.json)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="daemon log level (default info, as deployed)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the daemon under cProfile, one .prof file per case in DIR (inflates CPU)",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep configs and logs of every process"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    names = [name for name in SECTIONS if not options.only or name in options.only]
    sigterm_as_interrupt()
    workdir = Path(tempfile.mkdtemp(prefix="coap-bridge-bench-"))
    bench = Bench(workdir, options)
    status = 0
    try:
        run(bench, names)
    except KeyboardInterrupt:
        print("\ninterrupted; every process stopped", file=sys.stderr)
        status = 130
    except (StackError, LoopbackError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        status = 1
    finally:
        print(f"\nlogs: {workdir}" if options.keep_workdir or status else "", file=sys.stderr)
        if not options.keep_workdir and not status:
            shutil.rmtree(workdir, ignore_errors=True)
    if not bench.report.figures:
        return status or 1
    print("\n" + render_table(bench.report.figures))
    path = options.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = bench.report.as_json(options)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {path}")
    if scaling_runs(report):
        print(f"plot: {plot_report(report, path.with_suffix('.png'))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
