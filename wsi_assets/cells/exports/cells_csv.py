"""cells.csv: one row per nucleus (id, centroid, polygon, area, and the µm/px behind the area) in level-0 pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS
from wsi_assets.cells.store import iter_record_batches, nuclei_from_batch, extra_columns
from wsi_assets.cells.table import NucleusTable
from wsi_assets.core.atomic import atomic_output

# µm/px and whether it was inferred repeat on every row: a CSV has no header block, and a reader
# of areas in µm² must be able to see that the µm/px behind them was a guess.
CSV_COLUMNS = [
    "cell_id", "centroid_x", "centroid_y", "polygon_coords", "polygon_point_count", "area_pixels", "area_um2",
    "mpp", "mpp_inferred",
]


def _polygon_text(vertices: np.ndarray) -> str:
    return "[" + ",".join(f"[{x:.2f},{y:.2f}]" for x, y in vertices.tolist()) + "]"


def _extra_texts(batch, names: list[str]) -> list[list[str]]:
    """Per extra column, its values as CSV text: measurements to 4 decimals (empty when missing), the class as is."""
    texts = []
    for name in names:
        values = batch.column(name).to_pylist()
        if name == CLASS_COLUMN:
            texts.append(["" if v is None else str(v) for v in values])
        else:
            texts.append(["" if v is None or v != v else f"{v:.4f}" for v in values])
    return texts


def _csv_lines(cell_ids: np.ndarray, nuclei: NucleusTable, mpp: float, resolution: str, extras: list[list[str]] = ()) -> str:
    counts = nuclei.point_counts
    area_um2 = nuclei.area_pixels * mpp * mpp
    lines = []
    for i in range(len(nuclei)):
        polygon = _polygon_text(nuclei.polygon(i))
        tail = "".join("," + column[i] for column in extras)
        lines.append(
            f'{cell_ids[i]},{nuclei.centroid_x[i]:.3f},{nuclei.centroid_y[i]:.3f},"{polygon}",'
            f"{counts[i]},{nuclei.area_pixels[i]:.2f},{area_um2[i]:.3f},{resolution}{tail}\n"
        )
    return "".join(lines)


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
    with atomic_output(Path(csv_path)) as temporary, open(temporary, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(CSV_COLUMNS + extras) + "\n")
        for batch in iter_record_batches(cells_path):
            cell_ids, nuclei, _ = nuclei_from_batch(batch)
            out.write(_csv_lines(cell_ids, nuclei, mpp, resolution, _extra_texts(batch, extras)))
            rows += len(nuclei)
    return rows


FORMAT = ExportFormat(
    asset_name="cells_csv",
    file_name="cells.csv",
    kinds=("csv",),
    description="cells.csv: one row per nucleus (id, centroid, polygon, area) in level-0 pixels; opens in pandas, Excel, QuPath scripts.",
    write=write_cells_csv,
)
