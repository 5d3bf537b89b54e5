"""NGFF labels in a stack's OME-Zarr copy: `stack.ome.zarr/labels/<name>/`, an `image-label` multiscale image.

The label image has the stack's axes without the channel (t, z, y, x), the same levels and
scales as the image (napari lines layers up by their last axes: a size-1 c axis would put the
image's t on the labels' c and draw nothing), uint32 ids (0 background) and chunks of one Z plane (labels are written
plane by plane). Each level after the first takes every other row and column of the level
below (nearest neighbour: an id is never averaged into another). `labels/zarr.json` lists the
label images. The label image is built under a temporary name and appears whole or not at all;
files are replaced, never changed in place (a re-executed run's set holds hard links to its
parent's files).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.core.atomic import atomic_output, write_text_atomic
from wsi_assets.stacks.axes import StackInfo
from wsi_assets.stacks.blocks import yx_regions
from wsi_assets.stacks.ome_zarr import (
    CHUNK_YX,
    COMPRESSOR,
    NGFF_VERSION,
    level_shapes,
    multiscales,
)

LABELS_GROUP = "labels"
LABEL_DTYPE = np.uint32
PYRAMID_TILE = (2048, 2048)
# Colours are listed per label up to this many ids; beyond, the attributes would run to megabytes
# and viewers (napari) colour labels by id themselves.
MAX_LISTED_COLOURS = 5000


def label_shapes(info: StackInfo) -> list[tuple[int, ...]]:
    return [(t, z, y, x) for t, _, z, y, x in level_shapes(info)]


def label_colour(label: int) -> list[int]:
    """A bright, stable RGBA colour for an id (the same id has the same colour in every file)."""
    hue = (int(label) * 0.618033988749895) % 1.0
    rgb = np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)]).clip(0, 1)
    return [*(int(64 + 191 * v) for v in rgb), 255]


def image_label_attrs(info: StackInfo, name: str, labels: list[int] | None) -> dict:
    """The label image's `ome` attributes: its multiscales, and `image-label` with its source and colours."""
    image_label: dict = {"source": {"image": "../../"}}
    if labels is not None and len(labels) <= MAX_LISTED_COLOURS:
        image_label["colors"] = [{"label-value": int(v), "rgba": label_colour(v)} for v in labels]
    # The image's multiscales (its full shapes give the same scales), with the channel axis taken out.
    scales = multiscales(info, level_shapes(info))
    channel = [a["name"] for a in scales["axes"]].index("c")
    scales["axes"] = [a for i, a in enumerate(scales["axes"]) if i != channel]
    for dataset in scales["datasets"]:
        for transform in dataset["coordinateTransformations"]:
            transform["scale"] = [v for i, v in enumerate(transform["scale"]) if i != channel]
    scales["name"] = name
    return {"version": NGFF_VERSION, "image-label": image_label, "multiscales": [scales]}


class LabelImage:
    """The level arrays of a label image being written (level 0 by the caller, the rest by `build_pyramid`)."""

    def __init__(self, folder: Path, info: StackInfo, name: str):
        self.info, self.name, self.shapes = info, name, label_shapes(info)
        self.group = zarr.open_group(str(folder), mode="w", zarr_format=3)
        self.levels = [
            self.group.create_array(
                str(level),
                shape=shape,
                dtype=LABEL_DTYPE,
                dimension_names=list("tzyx"),
                compressors=COMPRESSOR,
                fill_value=0,
                chunks=(1, 1, min(CHUNK_YX, shape[2]), min(CHUNK_YX, shape[3])),
            )
            for level, shape in enumerate(self.shapes)
        ]

    def build_pyramid(self, t: int) -> None:
        """Levels 1.. of time point t from level 0, a tile at a time."""
        for level in range(1, len(self.levels)):
            below, array, shape = self.levels[level - 1], self.levels[level], self.shapes[level]
            for z in range(shape[1]):
                for ys, xs in yx_regions(shape[2], shape[3], PYRAMID_TILE):
                    source = below[t, z, 2 * ys.start : 2 * ys.stop : 2, 2 * xs.start : 2 * xs.stop : 2]
                    array[t, z, ys, xs] = source

    def finish(self, labels: list[int] | None) -> None:
        self.group.attrs["ome"] = image_label_attrs(self.info, self.name, labels)


@contextmanager
def label_image(zarr_folder: Path, info: StackInfo, name: str = "nuclei") -> Iterator[LabelImage]:
    """A new label image `name` in the OME-Zarr at `zarr_folder`; on success it replaces any earlier one and is listed in `labels`."""
    labels_folder = Path(zarr_folder) / LABELS_GROUP
    with atomic_output(labels_folder / name) as temporary:
        image = LabelImage(temporary, info, name)
        yield image
    listed = listed_labels(zarr_folder)
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": NGFF_VERSION, "labels": sorted({*listed, name})}},
    }
    write_text_atomic(labels_folder / "zarr.json", json.dumps(group, indent=2))


def listed_labels(zarr_folder: Path) -> list[str]:
    path = Path(zarr_folder) / LABELS_GROUP / "zarr.json"
    if not path.is_file():
        return []
    names = json.loads(path.read_text()).get("attributes", {}).get("ome", {}).get("labels", [])
    return [n for n in names if (path.parent / n).is_dir()]


def open_label_level(zarr_folder: Path, name: str = "nuclei", level: int = 0) -> zarr.Array:
    return zarr.open_array(str(Path(zarr_folder) / LABELS_GROUP / name / str(level)), mode="r")
