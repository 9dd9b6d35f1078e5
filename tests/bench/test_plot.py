"""The benchmark plot drawn from a bench.run report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.plot import main, plot_report, scaling_runs

pytest.importorskip("matplotlib")


def run(link: str, in_flight: int, rate: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {"link": link, "in_flight": in_flight, "req_per_s": rate, "p99_ms": p99, **extra}


LINE = "115200 baud, +50 ms, loss 0"
FAST = "unthrottled, +0 ms, loss 0"
REPORT: dict[str, Any] = {
    "date": "2026-12-01T22:00:00+00:00",
    "git": "abc1234",
    "runs": {
        "scaling line 8 in flight": run(LINE, 8, 69, 300, line_limit=134),
        "scaling line 1 in flight": run(LINE, 1, 8.7, 130, line_limit=134),
        "scaling line 64 in flight": run(LINE, 64, 127, 700, line_limit=133),
        "scaling fast 1 in flight": run(FAST, 1, 601, 3),
        "scaling fast 64 in flight": run(FAST, 64, 1153, 90),
        "scaling line payload p4k": run(LINE, 32, 1.2, 30000, line_limit=1.3),
        "line 32 in flight": {"in_flight": 32, "req_per_s": 126},
    },
}


def test_scaling_runs_are_the_in_flight_series_by_link() -> None:
    runs = scaling_runs(REPORT)
    assert set(runs) == {LINE, FAST}
    assert [r["in_flight"] for r in runs[LINE]] == [1, 8, 64]
    assert [r["in_flight"] for r in runs[FAST]] == [1, 64]


def test_plot_is_a_png_with_both_panels(tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = plot_report(REPORT, tmp_path / "nested" / "bench.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = imread(path).shape
    assert (width, height) == (1210, 462)


def test_a_report_without_scaling_runs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no in-flight scaling runs"):
        plot_report({"runs": {}}, tmp_path / "x.png")


def test_command_line_redraws_a_saved_report(tmp_path: Path) -> None:
    import json

    source = tmp_path / "report.json"
    source.write_text(json.dumps(REPORT))
    assert main([str(source)]) == 0
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert main([]) == 2
