"""Whole-slide-image nuclei segmentation orchestrated by Dagster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsi_assets.segmentation.image import segment_image
    from wsi_assets.segmentation.image_classes import segment_and_classify

__all__ = ["segment_image", "segment_and_classify"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import wsi_assets` (done by Dagster tooling and every submodule import)
    # does not pull in OpenCV and scikit-image.
    if name == "segment_image":
        from wsi_assets.segmentation.image import segment_image

        return segment_image
    if name == "segment_and_classify":
        from wsi_assets.segmentation.image_classes import segment_and_classify

        return segment_and_classify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
