"""The files produced for one slide, under <user>/outputs/<branch>/<slide>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import slide_output_dir


class MissingUpstreamOutput(FileNotFoundError):
    """An asset needs a file that an upstream asset has not produced yet."""


@dataclass(frozen=True)
class SlideOutputs:
    folder: Path

    @classmethod
    def for_key(cls, root: Path, key: SlideKey) -> "SlideOutputs":
        return cls(slide_output_dir(root, key))

    @property
    def metadata_json(self) -> Path:
        return self.folder / "slide_metadata.json"

    @property
    def thumbnail(self) -> Path:
        return self.folder / "thumbnail.jpg"

    @property
    def tissue_mask_png(self) -> Path:
        return self.folder / "tissue_mask.png"

    @property
    def tissue_mask_json(self) -> Path:
        return self.folder / "tissue_mask.json"

    @property
    def tissue_overlay(self) -> Path:
        return self.folder / "tissue_overlay.jpg"

    @property
    def cells_parquet(self) -> Path:
        return self.folder / "segmentation" / "cells.parquet"

    @property
    def segmentation_json(self) -> Path:
        return self.folder / "segmentation" / "summary.json"

    @property
    def qc_overlay(self) -> Path:
        return self.folder / "qc_overlay.jpg"

    def export_file(self, file_name: str) -> Path:
        """Where an export format's file goes (see wsi_assets.cells.exports)."""
        return self.folder / file_name

    def require(self, path: Path, produced_by: str) -> Path:
        if not path.exists():
            raise MissingUpstreamOutput(f"{path} is missing: materialize '{produced_by}' for this slide first")
        return path
