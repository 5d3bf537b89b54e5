"""Dagster resources: where user files live and how slides are segmented."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from wsi_assets.core.keys import SlideKey
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.core.user_files import USER_FILES_ENV, default_user_files_root, find_slide_file
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.slide import TilingSettings
from wsi_assets.slides.reader import FALLBACK_MPP


class UserFilesResource(ConfigurableResource):
    """The user-files root: uploads in <user>/inputs/, results in <user>/outputs/."""

    root: str = Field(default="", description=f"Folder of user files; empty means ${USER_FILES_ENV} or ./user_files")

    @property
    def root_path(self) -> Path:
        return Path(self.root).resolve() if self.root else default_user_files_root()

    def slide_file(self, key: SlideKey) -> Path:
        return find_slide_file(self.root_path, key)

    def outputs(self, key: SlideKey) -> SlideOutputs:
        return SlideOutputs.for_key(self.root_path, key)


class SegmentationResource(ConfigurableResource):
    """How slides are tiled and segmented."""

    tile_core_px: int = Field(default=1024, description="Model pixels each tile owns")
    tile_margin_px: int = Field(default=64, description="Overlap on each tile side, model pixels; wider than any nucleus")
    batch_size: int = Field(default=4, description="Tiles per segmenter call")
    read_threads: int = Field(default=2, description="Threads reading tiles ahead of the segmenter")
    default_mpp: float = Field(default=FALLBACK_MPP, description="µm/px assumed for slides with neither µm/px nor objective power")
    model: str = Field(default="default", description='Segmenter: "default" (classical for now), "classical", "learned" (the shipped model), or a TorchScript file path')
    model_mpp: float = Field(default=0.0, description="µm/px of a model file without a model card (0 = read it from the card)")
    device: str = Field(default="auto", description='Where the model runs: "auto" (cuda if torch sees one, else cpu), "cpu", "cuda", "cuda:N"')

    def segmenter(self) -> Segmenter:
        """The configured segmenter (loaded once per process and model file)."""
        return get_segmenter(self.model, device=self.device, mpp=self.model_mpp)

    def tiling(self) -> TilingSettings:
        return TilingSettings(
            core=self.tile_core_px, margin=self.tile_margin_px, batch_size=self.batch_size, read_threads=self.read_threads
        )

