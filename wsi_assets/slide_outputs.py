"""The files produced for one slide, under <user>/outputs/<branch>/<slide>/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsi_assets.slide_keys import SlideKey
from wsi_assets.slide_reader import SlideInfo
from wsi_assets.tissue import TissueMask
from wsi_assets.user_files import slide_output_dir, write_bytes_atomic, write_text_atomic
from wsi_assets.ui_images import encode_png


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

    @property
    def cells_csv(self) -> Path:
        return self.folder / "cells.csv"

    @property
    def cells_zarr_zip(self) -> Path:
        return self.folder / "cells.zarr.zip"

    def require(self, path: Path, produced_by: str) -> Path:
        if not path.exists():
            raise MissingUpstreamOutput(f"{path} is missing: materialize '{produced_by}' for this slide first")
        return path

    def write_slide_info(self, info: SlideInfo) -> None:
        write_text_atomic(self.metadata_json, json.dumps(info.as_dict(), indent=2))

    def read_slide_info(self) -> SlideInfo:
        data = json.loads(self.require(self.metadata_json, "slide_metadata").read_text())
        data.pop("mpp_inferred", None)
        data["level_dimensions"] = [tuple(d) for d in data["level_dimensions"]]
        return SlideInfo(**data)

    def write_tissue_mask(self, tissue: TissueMask) -> None:
        write_bytes_atomic(self.tissue_mask_png, encode_png(tissue.mask.astype(np.uint8) * 255))
        write_text_atomic(self.tissue_mask_json, json.dumps({"downsample": tissue.downsample, "mpp": tissue.mpp}))

    def read_tissue_mask(self) -> TissueMask:
        settings = json.loads(self.require(self.tissue_mask_json, "tissue_mask").read_text())
        mask = cv2.imread(str(self.require(self.tissue_mask_png, "tissue_mask")), cv2.IMREAD_GRAYSCALE)
        return TissueMask(mask=mask > 0, downsample=settings["downsample"], mpp=settings["mpp"])
