"""cells.csv as a user reads it with pandas: areas in µm² follow from the slide's own µm/px."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsi_assets.cells.exports.cells_csv import write_cells_csv
from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import NucleusTable


def shoelace_area(vertices: np.ndarray) -> float:
    x, y = np.asarray(vertices, np.float64).T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _squares(sides_px: list[float]) -> NucleusTable:
    """Axis-aligned square nuclei of the given sides, side by side; area_pixels = side²."""
    vertices, x0 = [], 0.0
    centres = []
    for side in sides_px:
        vertices += [[x0, 0.0], [x0 + side, 0.0], [x0 + side, side], [x0, side]]
        centres.append((x0 + side / 2, side / 2))
        x0 += side + 10
    centres = np.array(centres)
    return NucleusTable(
        centres[:, 0],
        centres[:, 1],
        np.array(sides_px, np.float64) ** 2,
        np.arange(0, 4 * len(sides_px) + 1, 4, dtype=np.int64),
        np.array(vertices, np.float32),
    )


@pytest.mark.parametrize("mpp", [0.5, 0.2631])  # 20x, and an odd scanner value; 0.25 would hide mpp-free formulas
def test_area_um2_is_the_outline_area_times_the_slides_pixel_area(tmp_path, mpp):
    sides = [10.0, 20.0, 33.0]
    cells = tmp_path / "cells.parquet"
    with CellStoreWriter(cells) as writer:
        writer.append(_squares(sides), 0, 0)
    csv = tmp_path / "cells.csv"
    assert write_cells_csv(cells, csv, {"mpp": mpp}) == 3

    found = pd.read_csv(csv)
    outline_px2 = [shoelace_area(json.loads(text)) for text in found["polygon_coords"]]
    np.testing.assert_allclose(outline_px2, [s * s for s in sides])
    expected_um2 = [side * mpp * side * mpp for side in sides]  # a side of s px is s·mpp µm long
    np.testing.assert_allclose(found["area_um2"], expected_um2, atol=1e-3)
    np.testing.assert_allclose(found["area_pixels"], [s * s for s in sides], atol=1e-2)
    assert found["mpp"].tolist() == [mpp] * 3 and found["mpp_inferred"].astype(str).tolist() == ["unknown"] * 3


@pytest.mark.parametrize("inferred", [True, False])
def test_every_row_says_whether_the_mpp_was_inferred(tmp_path, inferred):
    cells = tmp_path / "cells.parquet"
    with CellStoreWriter(cells) as writer:
        writer.append(_squares([10.0, 12.0]), 0, 0)
    csv = tmp_path / "cells.csv"
    write_cells_csv(cells, csv, {"mpp": 0.31, "mpp_inferred": inferred, "mpp_source": "nucleus-size estimate"})
    found = pd.read_csv(csv)
    assert list(found.columns[:6]) == [
        "cell_id",
        "centroid_x",
        "centroid_y",
        "polygon_coords",
        "polygon_point_count",
        "area_pixels",
    ]
    assert found["mpp_inferred"].tolist() == [inferred] * 2


def test_a_missing_measurement_is_an_empty_field_not_nan(tmp_path):
    # A measurement that could not be taken (solidity of an outline with no convex area) is stored as NaN;
    # in the CSV it is an empty field, which pandas, R and Excel all read as missing.
    table = _squares([10.0, 12.0, 14.0])
    table.columns["nucleus_solidity"] = np.array([0.91, np.nan, 0.875], np.float32)
    cells = tmp_path / "cells.parquet"
    with CellStoreWriter(cells, measurement_columns=("nucleus_solidity",)) as writer:
        writer.append(table, 0, 0)
    csv = tmp_path / "cells.csv"
    assert write_cells_csv(cells, csv, {"mpp": 0.5}) == 3

    text = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert text["nucleus_solidity"].tolist() == ["0.9100", "", "0.8750"]
    assert pd.read_csv(csv)["nucleus_solidity"].isna().tolist() == [False, True, False]
    # The other columns read exactly as in the cells.csv of the same nuclei without measurements.
    plain_cells, plain_csv = tmp_path / "plain.parquet", tmp_path / "plain.csv"
    with CellStoreWriter(plain_cells) as writer:
        writer.append(_squares([10.0, 12.0, 14.0]), 0, 0)
    write_cells_csv(plain_cells, plain_csv, {"mpp": 0.5})
    plain = pd.read_csv(plain_csv, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(text.drop(columns="nucleus_solidity"), plain)


def test_every_field_is_written_to_the_byte(tmp_path):
    # Arrow formats the numbers: its decimals must round as Python's f"{x:.Nf}" (ties to even on the
    # exact binary value), keep a minus on what rounds to zero, write inf as Python does, and leave
    # the class unquoted (pyarrow.csv would quote every string).
    table = NucleusTable(
        np.array([3.0625, -0.0001]),
        np.array([2.0005, 7.5]),
        np.array([12.125, 0.375]),
        np.array([0, 3, 4], np.int64),
        np.array([[0.125, 0.375], [2.675, -0.001], [1e6, 0.0], [1.0, 2.0]], np.float32),
    )
    table.columns["nucleus_solidity"] = np.array([-0.00004, np.inf], np.float32)
    base = tmp_path / "base.parquet"
    with CellStoreWriter(base, measurement_columns=("nucleus_solidity",)) as writer:
        writer.append(table, 0, 0)
    stored = pq.read_table(base)
    cells = tmp_path / "cells.parquet"
    pq.write_table(stored.append_column("class", pa.array([None, "inflammatory"])), cells)
    csv = tmp_path / "cells.csv"
    assert write_cells_csv(cells, csv, {"mpp": 0.5, "mpp_inferred": False}) == 2
    assert csv.read_text().splitlines()[1:] == [
        '1,3.062,2.001,"[[0.12,0.38],[2.67,-0.00],[1000000.00,0.00]]",3,12.12,3.031,0.5,false,-0.0000,',
        '2,-0.000,7.500,"[[1.00,2.00]]",1,0.38,0.094,0.5,false,inf,inflammatory',
    ]
