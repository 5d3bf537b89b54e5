"""summary.json per slide and the branch's summary.xlsx, read back with json and openpyxl."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from wsi_assets.cells.exports.slide_summary import write_slide_summary
from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.results.branch_workbook import write_branch_workbook
from wsi_assets_tests.conftest import run_process_slide

HEADER = [
    "slide",
    "nuclei",
    "nuclei per mm²",
    "tissue area mm²",
    "µm/px",
    "µm/px inferred",
    "model",
    "model version",
    "run id",
    "lymphocytes per mm²",
    "lymphocytes per mm² in epithelium",
    "lymphocytes per mm² in stroma",
]


def _rows(path) -> list[list]:
    sheet = load_workbook(path, read_only=True).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def _expected_row(summary: dict, classes: list[str]) -> list:
    return [
        summary["slide"],
        summary["nuclei"],
        summary["nuclei_per_mm2"],
        summary["tissue_area_mm2"],
        summary["mpp"],
        summary["mpp_inferred"],
        summary["model"],
        summary["model_version"],
        summary["run_id"],
        summary["lymphocytes_per_mm2"],
        summary["lymphocytes_per_mm2_epithelium"],
        summary["lymphocytes_per_mm2_stroma"],
        *(summary["class_counts"].get(name, 0) for name in classes),
    ]


def _expected(*summaries: dict) -> list[list]:
    """The header (a column per class any slide has, process_slide classifies every nucleus) and one row per slide."""
    classes = sorted({name for summary in summaries for name in summary["class_counts"]})
    return [HEADER + [f"{name} nuclei" for name in classes], *(_expected_row(summary, classes) for summary in summaries)]


def test_workbook_has_one_row_per_slide_and_is_rewritten_when_a_slide_finishes(small_slide, user_files_root, dagster_instance):
    branch = user_files_root / "dave" / "outputs" / "cohort"
    _, first = run_process_slide(dagster_instance, user_files_root, "dave", "cohort", small_slide, "s1")
    assert first.success
    one = json.loads((branch / "s1" / "summary.json").read_text())
    assert _rows(branch / "summary.xlsx") == _expected(one)
    # Where the lymphocytes are: per compartment in summary.json, and their heatmap in the set.
    assert {"lymphocytes_per_mm2_epithelium", "lymphocytes_per_mm2_stroma", "epithelium_mm2", "stroma_mm2"} <= set(one)
    assert (branch / "s1" / "segmentation" / "lymphocyte_heatmap.jpg").stat().st_size > 1000

    _, second = run_process_slide(dagster_instance, user_files_root, "dave", "cohort", small_slide, "s2")
    assert second.success
    two = json.loads((branch / "s2" / "summary.json").read_text())
    assert _rows(branch / "summary.xlsx") == _expected(one, two)
    assert one["run_id"] == first.run_id and two["run_id"] == second.run_id
    assert not [p for p in branch.iterdir() if p.name.startswith(".summary.xlsx")], "temporary workbook left behind"

    # summary.json holds the figures the UI shows for the slide.
    shown = {e.asset_key.to_user_string(): e.materialization.metadata for e in second.get_asset_materialization_events()}
    assert two["nuclei"] == shown["cell_segmentation"]["nuclei"].value > 0
    assert two["nuclei_per_mm2"] == shown["cell_segmentation"]["nuclei_per_mm2"].value
    assert two["tissue_area_mm2"] == pytest.approx(shown["tissue_mask"]["tissue_area_mm2"].value, rel=1e-3)
    assert (two["mpp"], two["mpp_inferred"]) == (
        shown["slide_metadata"]["mpp"].value,
        shown["slide_metadata"]["mpp_inferred"].value,
    )
    assert shown["slide_results"]["branch_summary_slides"].value == 2


def test_class_counts_reach_summary_and_workbook(tmp_path):
    labels = np.zeros((60, 60), np.int32)
    for i in range(9):
        labels[(i // 3) * 20 + 3 : (i // 3) * 20 + 12, (i % 3) * 20 + 3 : (i % 3) * 20 + 12] = i + 1
    slide_dir = tmp_path / "cohort" / "s1"
    (slide_dir / "segmentation").mkdir(parents=True)
    cells = slide_dir / "segmentation" / "cells.parquet"
    with CellStoreWriter(cells) as writer:
        writer.append(nuclei_from_labels(labels), 0, 0)
    classes = ["epithelial"] * 5 + ["inflammatory"] * 3 + ["spindle"]
    pq.write_table(pq.read_table(cells).append_column("class", pa.array(classes)), cells)
    (slide_dir / "segmentation" / "summary.json").write_text(json.dumps({"tissue_mm2": 0.5}))
    provenance = {
        "slide": "u/cohort/s1",
        "slide_file": "s1.svs",
        "mpp": 0.5,
        "mpp_inferred": False,
        "segmenter": "classical",
        "segmenter_version": "2",
        "run_id": "r1",
        "settings": {"exports": ["summary"]},
    }
    assert write_slide_summary(cells, slide_dir / "summary.json", provenance) == 9
    summary = json.loads((slide_dir / "summary.json").read_text())
    assert summary["class_counts"] == {"epithelial": 5, "inflammatory": 3, "spindle": 1}
    assert (summary["nuclei"], summary["nuclei_per_mm2"], summary["tissue_area_mm2"]) == (9, 18.0, 0.5)
    (tmp_path / "cohort" / "s0").mkdir()  # a slide without summary.json (not requested): no row
    path, rows = write_branch_workbook(tmp_path / "cohort")
    table = _rows(path)
    assert rows == 1 and len(table) == 2
    assert table[0][-3:] == ["epithelial nuclei", "inflammatory nuclei", "spindle nuclei"]
    assert table[1] == _expected_row(summary, ["epithelial", "inflammatory", "spindle"])
    assert table[1][-3:] == [5, 3, 1]
    # Densities per mm² of tissue (0.5 mm²) beside the counts; lymphocytes are the inflammatory class.
    assert summary["class_densities_per_mm2"] == {"epithelial": 10.0, "inflammatory": 6.0, "spindle": 2.0}
    assert summary["lymphocytes_per_mm2"] == 6.0


def test_workbook_has_a_sheet_of_slides_and_one_of_batches_without_nameless_rows(tmp_path):
    """A batch's summary.json beside a slide's: before, its class counts made a row with no name, and
    pandas then read `µm/px inferred` as 0.0 for every slide."""
    import pandas as pd

    from wsi_assets.batches.exports import write_batch_exports
    from wsi_assets.testing.synthetic_batch import synthetic_manifest, write_batch_cells

    slide_dir = tmp_path / "cohort" / "s1"
    (slide_dir / "segmentation").mkdir(parents=True)
    cells = slide_dir / "segmentation" / "cells.parquet"
    with CellStoreWriter(cells) as writer:
        writer.append(nuclei_from_labels(np.kron(np.arange(1, 5, dtype=np.int32).reshape(2, 2), np.ones((9, 9), np.int32))), 0, 0)
    (slide_dir / "segmentation" / "summary.json").write_text(json.dumps({"tissue_mm2": 0.5}))
    provenance = {
        "slide": "u/cohort/s1",
        "slide_file": "s1.svs",
        "mpp": 0.5,
        "mpp_inferred": True,
        "segmenter": "classical",
        "segmenter_version": "2",
        "run_id": "r1",
        "settings": {},
    }
    write_slide_summary(cells, slide_dir / "summary.json", provenance)
    batch_dir = tmp_path / "cohort" / "fov1"
    batch_dir.mkdir()
    manifest = synthetic_manifest("u/cohort/fov1", ["a.png", "b.png"], mpp=0.25, rejected=[("x.txt", "not an image")])
    write_batch_cells(batch_dir / "cells.parquet", manifest, cells_per_image=5)
    write_batch_exports(batch_dir / "cells.parquet", manifest, batch_dir)

    path, slides = write_branch_workbook(tmp_path / "cohort")
    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["slides", "batches"] and slides == 1
    for sheet in book.worksheets:
        assert all(row[0] not in (None, "") for row in sheet.iter_rows(values_only=True)), f"a nameless row in {sheet.title}"
    frames = pd.read_excel(path, sheet_name=None)
    assert frames["slides"]["slide"].tolist() == ["u/cohort/s1"]
    assert frames["slides"]["µm/px inferred"].tolist() == [True]
    batches = frames["batches"]
    assert batches["batch"].tolist() == ["u/cohort/fov1"]
    assert batches.loc[0, ["images", "nuclei", "rejected files", "median µm/px"]].tolist() == [2, 10, 1, 0.25]
    counts = json.loads((batch_dir / "summary.json").read_text())["class_counts"]
    assert {name: batches.loc[0, f"{name} nuclei"] for name in counts} == counts
