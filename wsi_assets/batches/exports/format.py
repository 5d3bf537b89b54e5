"""What a batch's export format declares: its file and the function that writes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
