"""Progress of a long loop (tiles of a slide, images of a batch) and a reporter that logs it every 10%."""

from __future__ import annotations

import math
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
