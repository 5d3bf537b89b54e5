"""Progress of a long loop (tiles of a slide, images of a batch) and reporters that log it every 10% or every few seconds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    cells: int
    elapsed_s: float
    unit: str = "tiles"  # what `done` counts, as the log line names it

    @property
    def per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        rate = self.per_s
        return (self.total - self.done) / rate if rate > 0 else float("nan")

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def line(self, stage: str) -> str:
        eta = "-" if math.isnan(self.eta_s) else f"{self.eta_s:.0f} s"
        return (
            f"{stage} {self.fraction:.0%}: {self.done}/{self.total} {self.unit}, "
            f"{self.cells} nuclei, {self.per_s:.2f} {self.unit}/s, ETA {eta}"
        )


class ProgressReporter:
    """Calls `log` at every `step` fraction of the work (and at the end) with the rate and ETA."""

    def __init__(self, log: Callable[[str], None], step: float = 0.1, stage: str = "segmentation"):
        self._log = log
        self._step = step
        self._next = step
        self._stage = stage

    def __call__(self, progress: Progress) -> None:
        fraction = progress.fraction
        if fraction + 1e-9 < self._next and progress.done < progress.total:
            return
        while self._next <= fraction + 1e-9:
            self._next += self._step
        self._log(progress.line(self._stage))


class EverySeconds:
    """Calls `log` with "<stage> <done>/<total> <unit>, <rate>, ETA" at the first item, then whenever
    `every_s` seconds have passed since the last line, and at the end: a phase whose items take
    seconds each still says something within its first minute, and a fast one stays quiet."""

    def __init__(
        self,
        log: Callable[[str], None],
        stage: str,
        unit: str,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._log, self._stage, self._unit, self._every, self._clock = log, stage, unit, every_s, clock
        self._start = clock()
        self._last: float | None = None

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        now = self._clock()
        if self._last is not None and done < total and now - self._last < self._every:
            return
        self._last = now
        elapsed = now - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "-"
        self._log(
            f"{self._stage} {done}/{total} {self._unit}, {rate:.2f} {self._unit}/s, ETA {eta}" + (f"; {detail}" if detail else "")
        )
