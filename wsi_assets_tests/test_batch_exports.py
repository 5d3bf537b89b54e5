"""A batch's exports from the registry, read back with the readers users have; no Dagster, no segmentation.

The cell table is built with pyarrow in the batch schema and the manifest by hand
(wsi_assets.testing.synthetic_batch), so each test takes a second or less.
"""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from wsi_assets.batches.cells import CELL_SCHEMA
from wsi_assets.batches.exports import (
    BATCH_EXPORT_FORMATS,
    BATCH_EXPORTS,
    BATCH_FORMAT_MODULES,
    declared,
    export_files,
    write_batch_exports,
)
from wsi_assets.batches.exports.coco import write_batch_coco
from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.exports.table import CellsNotInManifest
from wsi_assets.batches.exports.yolo import write_batch_yolo
from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.store import UnreadableCellTable
from wsi_assets.testing.synthetic_batch import image_rows, random_outlines, synthetic_manifest, write_batch_cells

WIDTH, HEIGHT = 256, 192  # not square, so a swapped width and height shows
NAMES = ["a.png", "b.jpg", "empty.png", "d.tif"]
SQUARE = np.array([[[40, 50], [80, 50], [80, 90], [40, 90]]], np.float32)  # 40 x 40 px, in a.png


def _write(path: Path, tables: list[pa.Table]) -> Path:
    with pq.ParquetWriter(str(path), CELL_SCHEMA) as writer:
        for table in tables:
            writer.write_table(table)
    return path


@pytest.fixture
def batch(tmp_path):
    """A four-image batch: a.png with a known square and random nuclei, empty.png without nuclei; one row group per image."""
    rng = np.random.default_rng(7)
    contents = {name: f"image {name}".encode() for name in NAMES}
    manifest = synthetic_manifest(
        "alice/main/plate1", NAMES, WIDTH, HEIGHT, mpp=0.5, rejected=[("notes.txt", "not an image")], contents=contents
    )
    tables = []
    for index, name in enumerate(NAMES):
        count = {"a.png": 6, "empty.png": 0}.get(name, 4 + index)
        outlines = random_outlines(rng, count, WIDTH, HEIGHT, vertices=12)
        if name == "a.png":
            # The square's corners each three times: the same 12 vertices a row as the random outlines.
            outlines = np.concatenate([np.repeat(SQUARE, 3, axis=1), outlines[1:]])
        classes = [CLASS_NAMES[(index + k) % len(CLASS_NAMES)] for k in range(count)]
        tables.append(image_rows(name, outlines, classes))
    cells = _write(tmp_path / "cells.parquet", tables)
    inputs = tmp_path / "inputs"  # the batch's input folder; its bytes stand in for the images
    inputs.mkdir()
    for name in NAMES:
        (inputs / name).write_bytes(contents[name])
    return {
        "cells": cells,
        "manifest": manifest,
        "table": pq.read_table(str(cells)),
        "folder": tmp_path / "out",
        "inputs": inputs,
    }


def _rows_of(table: pa.Table, name: str) -> dict:
    return table.filter(pc.equal(table.column("image"), name)).to_pydict()


def test_coco_reads_back_with_pycocotools(batch):
    from pycocotools.coco import COCO

    written = write_batch_exports(batch["cells"], batch["manifest"], batch["folder"], images_dir=batch["inputs"])
    coco = COCO(str(batch["folder"] / "coco.json"))
    images = coco.loadImgs(coco.getImgIds())
    # file_name is the image's copy inside the result set, never the input it came from.
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images] == [
        (n + 1, f"yolo/images/{name}", WIDTH, HEIGHT) for n, name in enumerate(NAMES)
    ]
    assert all(
        (batch["folder"] / i["file_name"]).read_bytes() == (batch["inputs"] / Path(i["file_name"]).name).read_bytes()
        for i in images
    )
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    assert written["coco"] == len(coco.getAnnIds()) == batch["table"].num_rows
    for image in images:
        rows = _rows_of(batch["table"], Path(image["file_name"]).name)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert [CLASS_NAMES[a["category_id"] - 1] for a in annotations] == rows["class"]
        assert [a["area"] for a in annotations] == rows["area_pixels"]
    square = coco.loadAnns(coco.getAnnIds(imgIds=1))[0]
    mask = coco.annToMask(square)
    assert mask.shape == (HEIGHT, WIDTH)
    assert abs(int(mask.sum()) - 40 * 40) < 0.1 * 40 * 40
    assert square["bbox"] == [40.0, 50.0, 40.0, 40.0]


def test_yolo_labels_parse_one_file_per_image(batch):
    written = write_batch_exports(batch["cells"], batch["manifest"], batch["folder"], images_dir=batch["inputs"])
    labels = batch["folder"] / "yolo" / "labels"
    assert sorted(p.name for p in labels.iterdir()) == sorted(f"{Path(n).stem}.txt" for n in NAMES)
    assert (labels / "empty.txt").read_text() == "", "an image without nuclei still has its (empty) label file"
    total = 0
    for name in NAMES:
        rows = _rows_of(batch["table"], name)
        lines = (labels / f"{Path(name).stem}.txt").read_text().splitlines()
        assert len(lines) == len(rows["image"])
        for line, cell_class, coords in zip(lines, rows["class"], rows["polygon_coords"]):
            index, *values = line.split()
            assert int(index) == CLASS_NAMES.index(cell_class)
            points = np.array(values, float).reshape(-1, 2)
            assert len(points) >= 3 and ((0 <= points) & (points <= 1)).all()
            assert np.allclose(points * (WIDTH, HEIGHT), np.array(coords).reshape(-1, 2), atol=1e-3)
        total += len(lines)
    assert written["yolo"] == total == batch["table"].num_rows
    data = yaml.safe_load((batch["folder"] / "yolo" / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(CLASS_NAMES)) and data["labels"] == "labels"
    # Trainable as it is: the images beside their labels (YOLO finds a label by images/ -> labels/), inputs untouched.
    assert (data["path"], data["train"], data["val"]) == (".", "images", "images")
    images = batch["folder"] / "yolo" / data["train"]
    assert sorted(p.name for p in images.iterdir()) == sorted(NAMES)
    assert sorted(p.stem for p in images.iterdir()) == sorted(p.stem for p in labels.iterdir())
    assert all((images / n).read_bytes() == f"image {n}".encode() for n in NAMES)
    assert sorted(p.name for p in batch["inputs"].iterdir()) == sorted(NAMES)


def test_yolo_images_are_copies_of_the_bytes_segmented(batch):
    """A hard link would give each upload a second name (the next scan refuses hard-linked uploads)
    and let an edit of the input reach the result; an image rewritten since it was hashed is not copied."""
    (batch["inputs"] / "b.jpg").write_bytes(b"rewritten after segmentation")
    write_batch_exports(batch["cells"], batch["manifest"], batch["folder"], images_dir=batch["inputs"])
    images = batch["folder"] / "yolo" / "images"
    assert sorted(p.name for p in images.iterdir()) == sorted(n for n in NAMES if n != "b.jpg")
    assert all(os.stat(batch["inputs"] / n).st_nlink == 1 for n in NAMES)
    assert all((images / p.name).stat().st_nlink == 1 for p in images.iterdir())


def test_workbook_and_summary_json_have_one_row_per_image(batch):
    from openpyxl import load_workbook

    written = write_batch_exports(batch["cells"], batch["manifest"], batch["folder"])
    sheet = load_workbook(batch["folder"] / "summary.xlsx", read_only=True)["images"]
    header, *body = list(sheet.iter_rows(values_only=True))
    assert written["excel"] == len(body) == len(NAMES)
    by_image = {row[header.index("image")]: dict(zip(header, row)) for row in body}
    summary = json.loads((batch["folder"] / "summary.json").read_text())
    assert written["json"] == summary["images"] == len(NAMES) and summary["cells"] == batch["table"].num_rows
    assert summary["rejected"] == [{"file": "notes.txt", "why": "not an image"}]
    area_mm2 = WIDTH * HEIGHT * 0.5 * 0.5 / 1e6
    for name, per_image in zip(NAMES, summary["per_image"]):
        rows = _rows_of(batch["table"], name)
        row = by_image[name]
        assert row == per_image, "the workbook and summary.json hold the same rows"
        assert row["cells"] == len(rows["image"]) and row["cells_per_mm2"] == round(row["cells"] / area_mm2, 1)
        assert [row[f"{c}_count"] for c in CLASS_NAMES] == [rows["class"].count(c) for c in CLASS_NAMES]
    assert summary["class_counts"] == {c: batch["table"].column("class").to_pylist().count(c) for c in CLASS_NAMES}


def test_rows_of_an_image_in_two_row_groups_are_all_exported(batch, tmp_path):
    """batch_cells keeps an image's rows together, but a writer must not lose rows that come back later."""
    table = batch["table"]
    a, rest = _rows_of(table, "a.png"), table.filter(pc.not_equal(table.column("image"), "a.png"))
    first = pa.Table.from_pydict({k: v[:2] for k, v in a.items()}, schema=CELL_SCHEMA)
    later = pa.Table.from_pydict({k: v[2:] for k, v in a.items()}, schema=CELL_SCHEMA)
    cells = _write(tmp_path / "split.parquet", [first, rest, later])
    folder = tmp_path / "split"
    written = write_batch_exports(cells, batch["manifest"], folder)
    assert written["coco"] == written["yolo"] == table.num_rows
    assert len((folder / "yolo" / "labels" / "a.txt").read_text().splitlines()) == len(a["image"])
    assert json.loads((folder / "summary.json").read_text())["per_image"][0]["cells"] == len(a["image"])


def test_cells_of_an_image_not_in_the_manifest_stop_every_export_in_one_line(batch):
    """A cell table and a manifest from different runs: one line naming the stranger, nothing half-written."""
    manifest = synthetic_manifest("alice/main/plate1", [n for n in NAMES if n != "d.tif"], WIDTH, HEIGHT)
    folder = batch["folder"]
    for export in BATCH_EXPORT_FORMATS:
        with pytest.raises(CellsNotInManifest) as raised:
            export.write(batch["cells"], manifest, folder / export.file_name)
        message = str(raised.value)
        assert (
            "\n" not in message
            and "'d.tif'" in message
            and "alice/main/plate1" in message
            and "run process_batch again" in message
        )
    # A subclass of the permanent cell-table error: the asset shows the line and does not retry.
    assert issubclass(CellsNotInManifest, UnreadableCellTable)
    assert not folder.exists() or list(folder.iterdir()) == [], "neither an export nor a temporary is left behind"


def test_the_registry_and_the_published_files_agree(batch, monkeypatch):
    assert BATCH_EXPORT_FORMATS == declared("BATCH_FORMAT", BATCH_FORMAT_MODULES)
    assert BATCH_EXPORTS == ("coco.json", "yolo", "summary.xlsx", "summary.json")
    assert len({e.name for e in BATCH_EXPORT_FORMATS}) == len(BATCH_EXPORT_FORMATS)
    write_batch_exports(batch["cells"], batch["manifest"], batch["folder"])
    assert sorted(p.name for p in batch["folder"].iterdir()) == sorted(BATCH_EXPORTS), "everything written is published"

    # A new format is its declaration: it is written and published with the others.
    def write_names(cells_path, manifest, destination):
        destination.write_text("\n".join(i.name for i in manifest.images))
        return len(manifest.images)

    module = types.ModuleType("wsi_assets.batches.exports.names_list")
    module.BATCH_FORMAT = BatchExportFormat("names", "names.txt", ("text",), "the image names", write_names)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    formats = declared("BATCH_FORMAT", (*BATCH_FORMAT_MODULES, "names_list"))
    assert export_files(formats) == (*BATCH_EXPORTS, "names.txt")
    written = write_batch_exports(batch["cells"], batch["manifest"], batch["folder"], formats)
    assert written["names"] == len(NAMES) and (batch["folder"] / "names.txt").read_text().splitlines() == NAMES


@pytest.mark.parametrize("writer", [write_batch_coco, write_batch_yolo], ids=["coco", "yolo"])
def test_coco_and_yolo_memory_does_not_grow_with_the_batch(writer, tmp_path):
    """Streamed a row group (32 images) at a time: three times the images, about the same peak."""
    peaks = []
    for images in (96, 288):
        manifest = synthetic_manifest("u/main/many", [f"f{i:04d}.png" for i in range(images)], WIDTH, HEIGHT)
        cells = tmp_path / f"cells_{images}.parquet"
        write_batch_cells(cells, manifest, 40, vertices=16)
        tracemalloc.start()
        assert writer(cells, manifest, tmp_path / f"out_{images}") == images * 40
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], f"peak Python memory grew with the batch: {peaks}"
