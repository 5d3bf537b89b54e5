"""Dagster resources: where user files live and how slides are segmented."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, field_validator

from wsi_assets.core.keys import SlideKey
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.core.user_files import (
    USER_FILES_ENV,
    default_user_files_root,
    find_slide_file,
)
from wsi_assets.results.output_paths import confine_slide_outputs
from wsi_assets.results.result_sets import (
    PublishedSet,
    publish_run_set,
    read_run_set,
    stage_run_set,
)
from wsi_assets.segmentation import settings as checks
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
        """The slide's published result set, once its output folders are checked to stay in the user's folder."""
        confine_slide_outputs(self.root_path, key)
        return SlideOutputs.for_key(self.root_path, key)

    def staged_outputs(self, key: SlideKey, run_id: str, stage: str, base_run_id: str | None = None) -> SlideOutputs:
        """The run's own result set, where `stage` writes (see wsi_assets.results.result_sets)."""
        return stage_run_set(self.root_path, key, run_id, stage, base_run_id)

    def run_outputs(self, key: SlideKey, run_id: str) -> SlideOutputs:
        """The run's staged set if it has one, else the published set."""
        return read_run_set(self.root_path, key, run_id)

    def publish(self, key: SlideKey, run_id: str, export_files: tuple[str, ...], before_switch=None) -> PublishedSet | None:
        """Switch the slide's published folder to the run's whole set; None when the run staged nothing."""
        return publish_run_set(self.root_path, key, run_id, export_files, self.slide_file(key), before_switch)


class SegmentationResource(ConfigurableResource):
    """How slides are tiled and segmented; every value is checked before any work (segmentation.settings)."""

    tile_core_px: int = Field(default=1024, description="Model pixels each tile owns (64-8192)")
    tile_margin_px: int = Field(
        default=64, description="Overlap on each tile side, model pixels; wider than any nucleus (0-1024)"
    )
    batch_size: int = Field(default=4, description="Tiles per segmenter call (1-256)")
    read_threads: int = Field(default=2, description="Threads reading tiles ahead of the segmenter (1-64)")
    default_mpp: float = Field(
        default=FALLBACK_MPP,
        description="µm/px (0.05-20) for slides with no stated µm/px, no metadata, no objective power and no measurable nuclei",
    )
    model: str = Field(
        default="default",
        description='Segmenter: "default" (the shipped learned model), "learned" (the same), "classical", or a TorchScript file path',
    )
    model_mpp: float = Field(default=0.0, description="µm/px of a model file without a model card (0 = read it from the card)")
    device: str = Field(
        default="auto", description='Where the model runs: "auto" (cuda if torch sees one, else cpu), "cpu", "cuda", "cuda:N"'
    )
    modality: str = Field(
        default="auto",
        description='Model family for images: "auto" (2-D, or bright objects on a dark background, is fluorescence), "brightfield" or "fluorescence"; branch.yaml may override',
    )

    # Pydantic runs these when Dagster builds the resource from the run config, so a bad value
    # fails the run at resource initialisation, naming the field, before any step does work.
    _tile_core = field_validator("tile_core_px", mode="before")(checks.check_tile_core_px)
    _tile_margin = field_validator("tile_margin_px", mode="before")(checks.check_tile_margin_px)
    _batch = field_validator("batch_size", mode="before")(checks.check_batch_size)
    _threads = field_validator("read_threads", mode="before")(checks.check_read_threads)
    _default_mpp = field_validator("default_mpp", mode="before")(checks.check_default_mpp)
    _model_mpp = field_validator("model_mpp", mode="before")(checks.check_model_mpp)
    _device = field_validator("device", mode="before")(checks.check_device_name)
    _modality = field_validator("modality", mode="before")(checks.check_modality)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # The model file and the GPU are facts of the machine the run executes on, so they are
        # checked here (the first step's resource set-up), not when the config is parsed.
        checks.check_model(self.model, self.model_mpp)
        checks.check_device_available(self.device)

    def segmenter(self, branch_model=None) -> Segmenter:
        """The configured segmenter, or the branch's own model when its branch.yaml names one (loaded once per process and model file)."""
        try:
            return get_segmenter(branch_model or self.model, device=self.device, mpp=0.0 if branch_model else self.model_mpp)
        except ValueError as error:  # ModelLoadError, or a device torch rejects: the user's setting
            raise checks.ConfigError(str(error).splitlines()[0]) from None

    def batch_modality(self, branch_modality: str | None = None) -> str:
        """The modality images are segmented under: branch.yaml's, else this resource's; under auto, a
        configured model whose card states its modality decides, else each image does."""
        modality = branch_modality or self.modality
        if modality == "auto":
            from wsi_assets.segmentation.registry import model_modality

            return model_modality(self.model) or "auto"
        return modality

    def fluorescence_model(self) -> str | None:
        """The model for fluorescence images: the configured one when its card says fluorescence, else None (the shipped one)."""
        from wsi_assets.segmentation.registry import model_modality

        return self.model if model_modality(self.model) == "fluorescence" else None

    def tiling(self) -> TilingSettings:
        return TilingSettings(
            core=self.tile_core_px, margin=self.tile_margin_px, batch_size=self.batch_size, read_threads=self.read_threads
        )
