"""A batch of cells as QuPath GeoJSON Feature texts, built column-wise with Arrow string kernels.

json.dumps per feature costs tens of seconds per million cells; joining whole columns of
strings in Arrow costs a few. Every piece below is already valid JSON text.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wsi_assets.cells.classes import CLASS_COLUMN, class_colour
from wsi_assets.cells.exports.polygons import Rings

# Coordinates to 1/100 px: far below what a viewer shows, and it halves the file.
COORDINATE_DECIMALS = 2
MEASUREMENT_DECIMALS = 4
# Ids are uuid5(this namespace, "<slide>/<cell id>"): the same cell of the same segmentation
# keeps its id across exports, and anyone can recompute it from the cell table.
CELL_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/wsi-assets/cells")


def cell_uuids(slide: str, cell_ids: np.ndarray) -> pa.Array:
    """str(uuid.uuid5(CELL_ID_NAMESPACE, f"{slide}/{cell_id}")) for each id, hex-formatted in bulk."""
    prefix = CELL_ID_NAMESPACE.bytes + f"{slide}/".encode("utf-8")
    digests = b"".join(hashlib.sha1(prefix + str(i).encode()).digest()[:16] for i in cell_ids.tolist())
    raw = np.frombuffer(digests, np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = np.frombuffer(raw.tobytes().hex().encode("ascii"), np.uint8).reshape(-1, 32)
    text = np.full((len(raw), 36), ord("-"), np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at : at + stop - start] = hexed[:, start:stop]
    offsets = pa.array(np.arange(0, 36 * len(raw) + 1, 36, dtype=np.int32))
    return pa.StringArray.from_buffers(len(raw), offsets.buffers()[1], pa.py_buffer(text.tobytes()))


def _numbers(values: np.ndarray, decimals: int) -> pa.Array:
    """JSON number texts; null where not finite (JSON has no NaN), for the caller to leave out."""
    values = np.asarray(values, np.float64)
    return pa.array(np.round(values, decimals), mask=~np.isfinite(values)).cast(pa.string())


def polygon_coordinates(rings: Rings) -> pa.Array:
    """Each ring as the text inside a Polygon's "coordinates": `[[[x,y],...]]`."""
    pairs = np.stack([rings.x, rings.y], axis=1).ravel()
    numbers = pa.array(np.round(pairs, COORDINATE_DECIMALS)).cast(pa.string())
    vertex = pc.binary_join(pa.ListArray.from_arrays(pa.array(np.arange(0, len(pairs) + 1, 2, dtype=np.int32)), numbers), ",")
    ring = pc.binary_join(pa.ListArray.from_arrays(pa.array(rings.offsets.astype(np.int32)), vertex), "],[")
    return pc.binary_join_element_wise("[[[", ring, "]]]", "")


def polygon_geometry(rings: Rings) -> pa.Array:
    return pc.binary_join_element_wise('{"type":"Polygon","coordinates":', polygon_coordinates(rings), "}", "")


def measurements(columns: dict[str, np.ndarray]) -> pa.Array:
    """`{"name":value,...}` per cell, QuPath's measurement map; non-finite values left out."""
    entries = [
        pc.binary_join_element_wise(json.dumps(name, ensure_ascii=False) + ":", _numbers(values, MEASUREMENT_DECIMALS), "")
        for name, values in columns.items()
    ]
    joined = pc.binary_join_element_wise(*entries, ",", null_handling="skip")
    return pc.binary_join_element_wise("{", joined, "}", "")


def classification(batch: pa.RecordBatch) -> pa.Array | None:
    """`"classification":{"name":..,"color":[r,g,b]},` per cell (null where unclassified), or None."""
    if CLASS_COLUMN not in batch.schema.names:
        return None
    encoded = pc.dictionary_encode(batch.column(CLASS_COLUMN).cast(pa.string()))
    texts = [
        None
        if name is None
        else '"classification":' + json.dumps({"name": name, "color": list(class_colour(name))}, ensure_ascii=False) + ","
        for name in encoded.dictionary.to_pylist()
    ]
    return pa.array(texts, pa.string()).take(encoded.indices)


def features(
    ids: pa.Array,
    geometry: pa.Array,
    object_type: str,
    measurement_map: pa.Array,
    classes: pa.Array | None,
    nucleus_geometry: pa.Array | None = None,
) -> pa.Array:
    """Feature texts, each starting with the ",\\n" that separates it from the one before."""
    pieces = [',\n{"type":"Feature","id":"', ids, '","geometry":', geometry]
    if nucleus_geometry is not None:
        pieces += [',"nucleusGeometry":', nucleus_geometry]
    pieces += [',"properties":{"objectType":"' + object_type + '",']
    if classes is not None:
        pieces.append(classes)  # null for an unclassified cell: skipped, no classification at all
    pieces += ['"measurements":', measurement_map, "}}"]
    return pc.binary_join_element_wise(*pieces, "", null_handling="skip")
