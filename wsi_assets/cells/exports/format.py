"""What a slide's export format declares: its asset, its file, and the function that writes it (a batch's: wsi_assets.batches.exports.format)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# (stored cells.parquet, destination file, provenance) -> number of cells written.
# A writer streams the cell table in batches and writes `destination` atomically.
ExportWriter = Callable[[Path, Path, dict], int]


@dataclass(frozen=True)
class ExportFormat:
    asset_name: str  # the Dagster asset, in group "exports"
    file_name: str  # written to <user>/outputs/<branch>/<slide>/<file_name>
    kinds: tuple[str, ...]  # shown as badges in the Dagster UI
    description: str
    write: ExportWriter
    # Written unless the branch's branch.yaml lists `exports` without it; off-by-default formats
    # (training sets: many files per slide) are written only when a branch asks for them.
    default_on: bool = True
    name: str = ""  # what branch.yaml's `exports` calls it; empty: the asset name without "cells_"

    @property
    def setting_name(self) -> str:
        return self.name or self.asset_name.removeprefix("cells_")
