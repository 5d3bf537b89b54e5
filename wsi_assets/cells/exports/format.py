"""What an export format declares: for a slide its asset, its file, and the function that writes it; for a batch its file and writer."""

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


# (the batch's cells.parquet, its manifest, destination file or folder) -> entries written.
# A writer reads the cell table a row group at a time and writes `destination` atomically. A
# format with `takes_images` gets the batch's input folder (or None) as a fourth argument: it
# only reads it, for the images a training set carries.
BatchExportWriter = Callable[..., int]


@dataclass(frozen=True)
class BatchExportFormat:
    name: str  # its key in the batch_exports asset's metadata
    file_name: str  # written to <user>/outputs/<branch>/<batch>/<file_name> and published with the batch
    kinds: tuple[str, ...]
    description: str
    write: BatchExportWriter
    takes_images: bool = False
