"""cells.csv: one row per nucleus (id, centroid, polygon, area, and the µm/px behind the area) in level-0 pixels.

The lines are built column by column in Arrow (pyarrow.compute), not cell by cell in Python.
Not with pyarrow.csv's writer: it quotes every string value (the class would gain quotes) and
cannot write a fixed number of decimals, and this file's bytes are part of what a run promises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS
from wsi_assets.cells.store import iter_record_batches, extra_columns
from wsi_assets.core.atomic import atomic_output

# µm/px and whether it was inferred repeat on every row: a CSV has no header block, and a reader
# of areas in µm² must be able to see that the µm/px behind them was a guess.
CSV_COLUMNS = [
    "cell_id",
    "centroid_x",
    "centroid_y",
    "polygon_coords",
    "polygon_point_count",
    "area_pixels",
    "area_um2",
    "mpp",
    "mpp_inferred",
]


# Arrow formats decimals as Python's f"{x:.Nf}" does (correctly rounded, ties to even); these
# bounds keep a value within decimal128's 38 digits. Anything else (inf, NaN where it is not
# "missing", a huge number) is formatted by Python, as it always was.
_DECIMAL_DIGITS = 38
_ORDINARY_LIMIT = 1e30
ROWS_PER_SLICE = 10_000


def _fixed(values, decimals: int, missing_is_empty: bool = False) -> pa.Array:
    """`values` as text with `decimals` places, as f"{value:.{decimals}f}" writes them; null where missing (if asked)."""
    numbers = np.asarray(values, np.float64)
    ordinary = np.isfinite(numbers) & (np.abs(numbers) < _ORDINARY_LIMIT)
    text = pc.cast(pa.array(np.where(ordinary, numbers, 0.0)).cast(pa.decimal128(_DECIMAL_DIGITS, decimals)), pa.string())
    # A decimal has no negative zero; Python writes a negative value that rounds to zero as "-0.00".
    negative_zero = pc.and_(pa.array(np.signbit(numbers) & ordinary), pc.equal(text, "0." + "0" * decimals))
    text = pc.if_else(negative_zero, pc.binary_join_element_wise("-", text, ""), text)
    if not ordinary.all():
        rare = np.flatnonzero(~ordinary)
        written = text.to_pylist()
        for i in rare:
            written[i] = f"{numbers[i]:.{decimals}f}"
        text = pa.array(written, pa.string())
    if missing_is_empty:
        text = pc.if_else(pa.array(np.isnan(numbers)), pa.scalar(None, pa.string()), text)
    return text


def _polygon_texts(polygon_x: pa.Array, polygon_y: pa.Array) -> pa.Array:
    """Per cell '"[[x,y],...]"' (quoted for the CSV), vertices to 2 decimals of their float32 values."""
    vertex_x = polygon_x.flatten().cast(pa.float32()).to_numpy(zero_copy_only=False)
    vertex_y = polygon_y.flatten().cast(pa.float32()).to_numpy(zero_copy_only=False)
    vertices = pc.binary_join_element_wise("[", _fixed(vertex_x, 2), ",", _fixed(vertex_y, 2), "]", "")
    offsets = polygon_x.offsets
    per_cell = pa.ListArray.from_arrays(pc.subtract(offsets, offsets[0]), vertices)
    return pc.binary_join_element_wise('"[', pc.binary_join(per_cell, ","), ']"', "")


def _extra_texts(batch: pa.RecordBatch, names: list[str]) -> list[pa.Array]:
    """Per extra column, its values as CSV text: measurements to 4 decimals (empty when missing), the class as is."""
    texts = []
    for name in names:
        column = batch.column(name)
        if name == CLASS_COLUMN:
            texts.append(pc.cast(column, pa.string()))
        else:
            numbers = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            texts.append(_fixed(numbers, 4, missing_is_empty=True))
    return texts


def _csv_rows(batch: pa.RecordBatch, mpp: float, resolution: str, extras: list[pa.Array]) -> pa.Array:
    """One string per cell: its whole CSV line, newline included. Built column-wise in Arrow, not cell by cell."""
    area_pixels = batch.column("area_pixels").to_numpy(zero_copy_only=False).astype(np.float64)
    columns = [
        pc.cast(batch.column("cell_id"), pa.string()),
        _fixed(batch.column("centroid_x").to_numpy(zero_copy_only=False), 3),
        _fixed(batch.column("centroid_y").to_numpy(zero_copy_only=False), 3),
        _polygon_texts(batch.column("polygon_x"), batch.column("polygon_y")),
        pc.cast(pc.list_value_length(batch.column("polygon_x")), pa.string()),
        _fixed(area_pixels, 2),
        _fixed(area_pixels * mpp * mpp, 3),
        resolution,
        *extras,
    ]
    line = pc.binary_join_element_wise(*columns, ",", null_handling="replace", null_replacement="")
    return pc.binary_join_element_wise(line, "\n", "")


def _write_strings(out, strings: pa.Array) -> None:
    """The strings' bytes back to back, straight from the Arrow buffer."""
    strings = strings.cast(pa.large_string())
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[strings.offset : strings.offset + len(strings) + 1]
    if len(strings):
        out.write(memoryview(strings.buffers()[2])[offsets[0] : offsets[-1]])


def write_cells_csv(cells_path: Path, csv_path: Path, provenance: dict) -> int:
    """cells.csv: one row per nucleus, level-0 pixel coordinates. Returns the number of rows."""
    mpp = provenance["mpp"]
    # Provenance without the flag (older summaries) says nothing about how µm/px was found: unknown.
    inferred = provenance.get("mpp_inferred")
    resolution = f"{mpp},{'unknown' if inferred is None else str(bool(inferred)).lower()}"
    rows = 0
    stored = {field.name for field in extra_columns(cells_path)}
    # Measurements and the class follow the fixed columns (cells.csv's first columns never move).
    extras = [name for name in (*MEASUREMENT_COLUMNS, CLASS_COLUMN) if name in stored]
    with atomic_output(Path(csv_path)) as temporary, open(temporary, "wb") as out:
        out.write((",".join(CSV_COLUMNS + extras) + "\n").encode("utf-8"))
        for batch in iter_record_batches(cells_path):
            # A slice at a time: each column's text is held in Arrow until the lines are joined.
            for start in range(0, batch.num_rows, ROWS_PER_SLICE):
                part = batch.slice(start, ROWS_PER_SLICE)
                _write_strings(out, _csv_rows(part, mpp, resolution, _extra_texts(part, extras)))
            rows += batch.num_rows
    return rows


FORMAT = ExportFormat(
    asset_name="cells_csv",
    file_name="cells.csv",
    kinds=("csv",),
    description="cells.csv: one row per nucleus (id, centroid, polygon, area) in level-0 pixels; opens in pandas, Excel, QuPath scripts.",
    write=write_cells_csv,
)
