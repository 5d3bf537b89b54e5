"""Whether a run's worker process still lives, from the operating system's process table."""

from __future__ import annotations

import os
from pathlib import Path


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time), from /proc; None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    ticks_after_boot = int(fields[19])
    boot_time = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    return boot_time + ticks_after_boot / os.sysconf("SC_CLK_TCK")


def worker_alive(pid: int, reported_at: float) -> bool:
    """Whether the worker that reported `pid` at `reported_at` still runs (not a later process with its pid)."""
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    started = _process_start_time(pid)
    return started is not None and started <= reported_at + 1.0
