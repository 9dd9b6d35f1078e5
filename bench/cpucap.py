"""A CPU quota for one process: a cgroup of its own, as on a gateway with a small CPU.

cgroup v2 (`cpu.max`) where the unified hierarchy has the cpu controller, else the v1
cpu controller (`cpu.cfs_quota_us`). Needs root; `CapUnavailable` says why otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class CapUnavailable(Exception):
    """No CPU quota can be set here; the message says why."""


def _hierarchy() -> tuple[Path, str]:
    """The cgroup directory to create groups in, and its flavour ("v2" or "v1")."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return CGROUP_ROOT, "v2"
    v1 = CGROUP_ROOT / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    raise CapUnavailable("no cgroup cpu controller is mounted (cgroup v2 cpu.max or v1 cpu)")


@contextlib.contextmanager
def cpu_capped(pid: int, share: float, name: str) -> Iterator[None]:
    """Hold process `pid` to `share` of one core (0.1: 10 %) until the block ends."""
    if os.geteuid() != 0:
        raise CapUnavailable("setting a cgroup CPU quota needs root")
    root, flavour = _hierarchy()
    group = root / f"coap-bridge-bench-{name}-{os.getpid()}"
    quota = max(int(PERIOD_US * share), 1000)
    try:
        group.mkdir()
        if flavour == "v2":
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (group / "cgroup.procs").write_text(f"{pid}\n")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise CapUnavailable(f"could not set up {group}: {exc}") from exc
    try:
        yield
    finally:
        # A group can only be removed once empty: the process goes back to the root.
        with contextlib.suppress(OSError):
            (root / "cgroup.procs").write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            group.rmdir()
