"""The benchmark's figures, their targets and the table `make bench` prints."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(f"  {figure.name}: {number(figure.value)} {figure.unit}", flush=True)

    def as_json(self, options: argparse.Namespace) -> dict[str, Any]:
        return {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "quick": options.quick,
            "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "git": git_revision(),
            "figures": [asdict(figure) for figure in self.figures],
            "runs": self.runs,
        }


def number(value: float) -> str:
    if value != value:  # NaN: nothing was measured
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return ""


def render_table(figures: Sequence[Figure]) -> str:
    rows = [("section", "figure", "value", "unit", "target", "result")]
    for figure in figures:
        verdict = "" if figure.passed is None else ("PASS" if figure.passed else "FAIL")
        rows.append(
            (
                figure.section,
                figure.name,
                number(figure.value),
                figure.unit,
                figure.target,
                verdict,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column == 2 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)
