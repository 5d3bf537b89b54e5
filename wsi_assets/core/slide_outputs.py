"""The files produced for one slide: one result set, published at <user>/outputs/<branch>/<slide>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import slide_output_dir

# The steps that fill a result set, in order. Rewriting one stage makes every later stage stale
# (cells found on an old tissue mask, exports of old cells), so a run drops them from its set.
STAGES = ("slide", "tissue", "cells", "exports")
# The set on one page for a browser (wsi_assets.reports), rewritten by every run that publishes; batches use the name too.
REPORT_FILE = "report.html"


class MissingUpstreamOutput(FileNotFoundError):
    """An asset needs a file that an upstream asset has not produced yet."""


@dataclass(frozen=True)
class SlideOutputs:
    folder: Path

    @classmethod
    def for_key(cls, root: Path, key: SlideKey) -> SlideOutputs:
        """The published set (what readers see); runs write into their own set (wsi_assets.results)."""
        return cls(slide_output_dir(root, key))

    @property
    def metadata_json(self) -> Path:
        return self.folder / "slide_metadata.json"

    @property
    def thumbnail(self) -> Path:
        return self.folder / "thumbnail.jpg"

    @property
    def slide_file_json(self) -> Path:
        """The identity of the slide file the set was made from (size, mtime, inode, fingerprint)."""
        return self.folder / "slide_file.json"

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
    def segmentation_dir(self) -> Path:
        return self.folder / "segmentation"

    @property
    def cells_parquet(self) -> Path:
        return self.segmentation_dir / "cells.parquet"

    @property
    def segmentation_json(self) -> Path:
        return self.segmentation_dir / "summary.json"

    @property
    def qc_overlay(self) -> Path:
        return self.folder / "qc_overlay.jpg"

    @property
    def report_html(self) -> Path:
        return self.folder / REPORT_FILE

    def export_file(self, file_name: str) -> Path:
        """Where an export format's file goes (see wsi_assets.cells.exports)."""
        return self.folder / file_name

    def stage_entries(self) -> dict[str, tuple[str, ...]]:
        """Top-level names each stage before the exports writes; any other name belongs to the exports."""
        return {
            "slide": (self.metadata_json.name, self.thumbnail.name, self.slide_file_json.name),
            "tissue": (self.tissue_mask_png.name, self.tissue_mask_json.name, self.tissue_overlay.name),
            "cells": (self.segmentation_dir.name, self.qc_overlay.name),
        }

    def stage_required(self, export_files: tuple[str, ...]) -> dict[str, tuple[Path, ...]]:
        """The files a complete stage holds (slide_file.json is optional: sets made before it existed lack it)."""
        return {
            "slide": (self.metadata_json, self.thumbnail),
            "tissue": (self.tissue_mask_png, self.tissue_mask_json, self.tissue_overlay),
            "cells": (self.cells_parquet, self.segmentation_json, self.qc_overlay),
            "exports": tuple(self.export_file(name) for name in export_files),
        }

    def stage_of(self, name: str) -> str:
        """The stage that writes the top-level entry `name`."""
        return next((stage for stage, names in self.stage_entries().items() if name in names), "exports")

    def require(self, path: Path, produced_by: str) -> Path:
        if not path.exists():
            # Named within the set: the set's own folder (a run id under .sets/) means nothing to a user.
            shown = path.relative_to(self.folder).as_posix() if self.folder in path.parents else str(path)
            raise MissingUpstreamOutput(
                f"{shown} is missing from this slide's results: materialize '{produced_by}' for this slide first"
            )
        return path
