"""The slide spec and the layout every part shares: tile size, render blocks, pyramid levels."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

TILE_SIZE = 256

_FORMAT_VERSION = 1
_LEVEL_FACTOR = 4
_SMALLEST_LEVEL_SIDE = 1024
_BLOCK_TILES = 8  # tiles of one tile row rendered together: numpy work per call stays large


@dataclass(frozen=True)
class SyntheticSlideSpec:
    """Everything that determines a synthetic slide: same spec, same pixels and same truth."""

    width: int
    height: int
    mpp: float = 0.25
    seed: int = 0
    objective_power: int = 40
    write_mpp: bool = True
    nucleus_spacing_um: float = 14.0
    nucleus_min_radius_um: float = 3.0
    nucleus_max_radius_um: float = 5.5
    nucleus_jitter: float = 0.15  # largest centre offset from the cell centre, in spacings
    nucleus_fill: float = 0.9  # fraction of lattice cells that hold a nucleus
    tissue_fraction: float | None = None  # None: drawn from the seed in [0.40, 0.55]
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"slide size must be positive, got {self.width}x{self.height}")
        if self.mpp <= 0 or self.nucleus_spacing_um <= 0:
            raise ValueError("mpp and nucleus_spacing_um must be positive")
        if not 0 < self.nucleus_min_radius_um <= self.nucleus_max_radius_um:
            raise ValueError("need 0 < nucleus_min_radius_um <= nucleus_max_radius_um")
        if not 0 <= self.nucleus_jitter <= 0.5 or not 0 <= self.nucleus_fill <= 1:
            raise ValueError("nucleus_jitter must lie in [0, 0.5] and nucleus_fill in [0, 1]")
        if self.tissue_fraction is not None and not 0 < self.tissue_fraction < 1:
            raise ValueError("tissue_fraction must lie in (0, 1)")

    @property
    def spacing_px(self) -> float:
        return self.nucleus_spacing_um / self.mpp

    @property
    def lattice_shape(self) -> tuple[int, int]:
        """(rows, columns) of nucleus lattice cells covering the slide."""
        return math.ceil(self.height / self.spacing_px), math.ceil(self.width / self.spacing_px)

    @property
    def max_radius_px(self) -> float:
        return self.nucleus_max_radius_um / self.mpp

    def to_json(self) -> str:
        fields = {"format": _FORMAT_VERSION, **dataclasses.asdict(self)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SyntheticSlideSpec:
        fields = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})


def level_downsamples(spec: SyntheticSlideSpec) -> list[int]:
    """Downsample of each pyramid level: 1, 4, 16, ... until the long side is <= 1024 px."""
    downsamples = [1]
    while max(spec.width, spec.height) // downsamples[-1] > _SMALLEST_LEVEL_SIDE:
        downsamples.append(downsamples[-1] * _LEVEL_FACTOR)
    return downsamples


def level_dimensions(spec: SyntheticSlideSpec) -> list[tuple[int, int]]:
    """(width, height) of each pyramid level."""
    return [(max(1, spec.width // d), max(1, spec.height // d)) for d in level_downsamples(spec)]
