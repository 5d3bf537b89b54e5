"""A slide's metadata and tissue mask as stored in its output folder, for the steps after them."""

from __future__ import annotations

import json

import cv2
import numpy as np

from wsi_assets.core.atomic import write_bytes_atomic, write_text_atomic
from wsi_assets.core.images import encode_png
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.slides.reader import SlideInfo
from wsi_assets.slides.tissue import TissueMask


def save_slide_info(outputs: SlideOutputs, info: SlideInfo) -> None:
    write_text_atomic(outputs.metadata_json, json.dumps(info.as_dict(), indent=2))


def load_slide_info(outputs: SlideOutputs) -> SlideInfo:
    data = json.loads(outputs.require(outputs.metadata_json, "slide_metadata").read_text())
    data.pop("mpp_inferred", None)
    data["level_dimensions"] = [tuple(d) for d in data["level_dimensions"]]
    return SlideInfo(**data)


def save_tissue_mask(outputs: SlideOutputs, tissue: TissueMask) -> None:
    write_bytes_atomic(outputs.tissue_mask_png, encode_png(tissue.mask.astype(np.uint8) * 255))
    write_text_atomic(outputs.tissue_mask_json, json.dumps({"downsample": tissue.downsample, "mpp": tissue.mpp}))


def load_tissue_mask(outputs: SlideOutputs) -> TissueMask:
    settings = json.loads(outputs.require(outputs.tissue_mask_json, "tissue_mask").read_text())
    mask = cv2.imread(str(outputs.require(outputs.tissue_mask_png, "tissue_mask")), cv2.IMREAD_GRAYSCALE)
    return TissueMask(mask=mask > 0, downsample=settings["downsample"], mpp=settings["mpp"])
