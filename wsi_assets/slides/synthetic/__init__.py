"""Synthetic H&E-like whole-slide images whose nuclei are known exactly.

A slide is a pure function of a :class:`SyntheticSlideSpec`: tissue is a smooth field
sampled on a small global grid, nuclei sit one per cell of a jittered lattice and draw
their parameters from a counter-based hash of ``(seed, cell)``. Any region can therefore be
rendered, or its truth listed, without looking at the rest of the slide, which is what lets
:func:`write_synthetic_slide` stream slides of any size tile by tile in flat memory.

The file is a pyramidal tiled JPEG TIFF whose first description starts with "Aperio", so
OpenSlide opens it with vendor "aperio"; the spec itself rides along in that description.

Modules, each importing only those listed before it:
``spec`` (the spec, tile size and pyramid levels), ``fields`` (tissue field and noise
textures), ``nuclei`` (lattice, hash, outlines and truth tables), ``rendering`` (region
pixels) and ``pyramid`` (writing and reading the slide file).
"""

from .fields import synthetic_tissue_mask
from .nuclei import (
    NUCLEUS_COLUMNS,
    count_synthetic_nuclei,
    iter_synthetic_nuclei,
    synthetic_nuclei,
    synthetic_nucleus_polygons,
)
from .pyramid import SPEC_FIELD, read_synthetic_spec, write_synthetic_slide
from .rendering import render_region
from .spec import TILE_SIZE, SyntheticSlideSpec, level_dimensions, level_downsamples

__all__ = [
    "NUCLEUS_COLUMNS",
    "SPEC_FIELD",
    "TILE_SIZE",
    "SyntheticSlideSpec",
    "count_synthetic_nuclei",
    "iter_synthetic_nuclei",
    "level_dimensions",
    "level_downsamples",
    "read_synthetic_spec",
    "render_region",
    "synthetic_nuclei",
    "synthetic_nucleus_polygons",
    "synthetic_tissue_mask",
    "write_synthetic_slide",
]
