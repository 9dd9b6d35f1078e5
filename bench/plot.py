"""The benchmark plot: throughput and p99 latency against requests in flight.

`plot_report(report, path)` draws the in-flight scaling runs of one `bench.run` JSON
report as a PNG, one line per link profile, with the serial line's limit drawn where
the profile has one. matplotlib is the `bench` extra; nothing else imports it.
`python -m bench.plot REPORT.json [OUT.png]` redraws a saved report.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_IN_FLIGHT_RUN = re.compile(r"^scaling \w+ (\d+) in flight$")


def scaling_runs(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The in-flight scaling runs of a report by link profile, sorted by in flight."""
    by_link: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label, run in report.get("runs", {}).items():
        if _IN_FLIGHT_RUN.match(label) and "link" in run:
            by_link[run["link"]].append(run)
    return {link: sorted(runs, key=lambda run: run["in_flight"]) for link, runs in by_link.items()}


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Write the plot of `report` to `path` (PNG); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    runs = scaling_runs(report)
    if not runs:
        raise ValueError("the report has no in-flight scaling runs (bench.run --only scaling)")
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for link, series in runs.items():
        in_flight = [run["in_flight"] for run in series]
        line = throughput.plot(in_flight, [run["req_per_s"] for run in series], "o-", label=link)
        latency.plot(in_flight, [run["p99_ms"] for run in series], "o-", label=link)
        limits = [run["line_limit"] for run in series if "line_limit" in run]
        if limits:
            limit = sum(limits) / len(limits)
            throughput.axhline(
                limit,
                linestyle="--",
                color=line[0].get_color(),
                label=f"line limit ({link.split(',')[0]}): {limit:.0f} req/s",
            )
    ticks = sorted({run["in_flight"] for series in runs.values() for run in series})
    for axes, title, unit in (
        (throughput, "throughput", "req/s"),
        (latency, "p99 latency", "ms"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xticks(ticks, labels=[str(tick) for tick in ticks])
        axes.set_yscale("log")
        axes.set_xlabel("requests in flight")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(
        f"mqtt-coap-bridge bench {report.get('date', '')} ({report.get('git', '')})",
        fontsize="medium",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        print("usage: python -m bench.plot REPORT.json [OUT.png]", file=sys.stderr)
        return 2
    source = Path(args[0])
    target = Path(args[1]) if len(args) == 2 else source.with_suffix(".png")
    print(plot_report(json.loads(source.read_text()), target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
