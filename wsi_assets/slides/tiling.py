"""The grid of overlapping tiles a slide is segmented in, and which tile owns each nucleus."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wsi_assets.slides.tissue import TissueMask


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    # Box read from the slide, level-0 px (includes the margin; may extend past the slide edge).
    read_x: int
    read_y: int
    read_w: int
    read_h: int
    # Core this tile owns, level-0 px, half-open [x0, x1) x [y0, y1): the cores partition the slide.
    core_x0: float
    core_y0: float
    core_x1: float
    core_y1: float

    def owns(self, x, y):
        """Whether level-0 points fall in this tile's core (works on numpy arrays)."""
        return (x >= self.core_x0) & (x < self.core_x1) & (y >= self.core_y0) & (y < self.core_y1)


@dataclass(frozen=True)
class TileGrid:
    slide_width: int
    slide_height: int
    scale: float  # level-0 px per model px
    core: int  # model px
    margin: int  # model px on each side
    rows: int
    cols: int

    @property
    def tile_pixels(self) -> int:
        """Side of the image given to the segmenter, in model px."""
        return self.core + 2 * self.margin

    def tile(self, row: int, col: int) -> Tile:
        step = self.core * self.scale
        core_x0, core_y0 = col * step, row * step
        read_x = int(math.floor(core_x0 - self.margin * self.scale))
        read_y = int(math.floor(core_y0 - self.margin * self.scale))
        side = int(round(self.tile_pixels * self.scale))
        return Tile(
            row=row,
            col=col,
            read_x=read_x,
            read_y=read_y,
            read_w=side,
            read_h=side,
            core_x0=core_x0,
            core_y0=core_y0,
            core_x1=min((col + 1) * step, self.slide_width),
            core_y1=min((row + 1) * step, self.slide_height),
        )

    def tissue_tiles(self, tissue: TissueMask | None) -> list[Tile]:
        """Tiles whose core touches tissue, row-major (all tiles when there is no mask)."""
        tiles = []
        for row in range(self.rows):
            for col in range(self.cols):
                tile = self.tile(row, col)
                if tissue is None or tissue.covers(tile.core_x0, tile.core_y0, tile.core_x1, tile.core_y1):
                    tiles.append(tile)
        return tiles


def make_tile_grid(slide_width: int, slide_height: int, slide_mpp: float, model_mpp: float, core: int, margin: int) -> TileGrid:
    if core <= 0 or margin < 0:
        raise ValueError(f"tile core ({core}) must be positive and margin ({margin}) not negative")
    scale = model_mpp / slide_mpp
    step = core * scale
    return TileGrid(
        slide_width=slide_width,
        slide_height=slide_height,
        scale=scale,
        core=core,
        margin=margin,
        rows=max(1, math.ceil(slide_height / step)),
        cols=max(1, math.ceil(slide_width / step)),
    )
