"""COCO and YOLO-seg training sets, read back with pycocotools and by parsing the label files.

The stored cells are traced from a rasterised synthetic slide, so each nucleus's mask is known;
small tiles (256 level-0 px) put many nuclei across tile borders.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from shapely.geometry import Polygon, box

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.exports import coco, yolo
from wsi_assets.cells.exports.tiles import MIN_PART_AREA
from wsi_assets.cells.store import CellStoreWriter, iter_cells
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.slides.reader import open_slide, read_level_rgb
from wsi_assets.slides.synthetic import (
    SyntheticSlideSpec,
    synthetic_nuclei,
    synthetic_nucleus_polygons,
    write_synthetic_slide,
)

pycocotools = pytest.importorskip("pycocotools.coco")
coco_masks = pytest.importorskip("pycocotools.mask")
TILE = 256
SPEC = SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=3)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(slide path, cells.parquet, {cell id: level-0 outline}) for the synthetic slide."""
    folder = tmp_path_factory.mktemp("coco")
    slide = write_synthetic_slide(folder / "slide07.svs", SPEC) and folder / "slide07.svs"
    truth = synthetic_nuclei(SPEC, 0, 0, SPEC.width, SPEC.height)
    labels = np.zeros((SPEC.height, SPEC.width), np.int32)
    for index, outline in enumerate(synthetic_nucleus_polygons(SPEC, truth)):
        cv2.fillPoly(labels, [np.round(outline - 0.5).astype(np.int32)], index + 1)
    (folder / "segmentation").mkdir()
    cells = folder / "segmentation" / "cells.parquet"
    with CellStoreWriter(cells) as writer:
        writer.append(nuclei_from_labels(labels), 0, 0)
    outlines = {}
    for ids, nuclei, _ in iter_cells(cells):
        outlines.update({int(ids[i]): nuclei.polygon(i).astype(np.float64) for i in range(len(nuclei))})
    return slide, cells, outlines


def provenance(slide: Path, tile_size: int = TILE) -> dict:
    return {
        "slide": "alice/main/slide07",
        "slide_file": slide.name,
        "slide_path": str(slide),
        "mpp": 0.25,
        "segmenter": "test",
        "segmenter_version": "1",
        "settings": {"tile_size": tile_size},
    }


def tiles_of(outline: np.ndarray) -> dict[tuple[int, int], Polygon]:
    """Tile origin -> the outline's largest part in it, where that part is not a sliver (computed here, not by the writer)."""
    shape, parts = Polygon(outline), {}
    for y0 in range(0, SPEC.height, TILE):
        for x0 in range(0, SPEC.width, TILE):
            inside = shape.intersection(box(x0, y0, min(x0 + TILE, SPEC.width), min(y0 + TILE, SPEC.height)))
            pieces = [g for g in getattr(inside, "geoms", [inside]) if isinstance(g, Polygon) and g.area > 0]
            largest = max(pieces, key=lambda p: p.area) if pieces else None
            if largest is not None and largest.area >= MIN_PART_AREA and min(_extent(largest)) >= 1.0:
                parts[(x0, y0)] = largest
    return parts


def _extent(part: Polygon) -> tuple[float, float]:
    xmin, ymin, xmax, ymax = part.bounds
    return xmax - xmin, ymax - ymin


def truth_mask(outline: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """The stored nucleus as pixels of a tile: its outline runs through boundary pixel centres."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(outline - 0.5 - (x0, y0)).astype(np.int32)], 1)
    return mask


def coco_mask(outline: np.ndarray, x0: float, y0: float, width: int, height: int, downsample: float = 1.0) -> np.ndarray:
    """A level-0 outline as a tile's pixels, rasterised as pycocotools rasterises the exported ones.

    The outline is moved to the tile origin and scaled to image pixels, drawn whole with
    `frPyObjects` + `decode` on a canvas padded to hold both it and the tile, then cropped to the
    tile: the cut is made by the crop, not by the polygon, so this is the like-for-like reference
    for a clipped part (same rasteriser, same pixel convention).
    """
    points = (np.asarray(outline, np.float64) - (x0, y0)) / downsample
    low = np.floor(np.minimum(points.min(axis=0), 0)).astype(int) - 2
    high = np.ceil(np.maximum(points.max(axis=0), (width, height))).astype(int) + 2
    canvas_w, canvas_h = (int(v) for v in high - low)
    rles = coco_masks.frPyObjects([[float(v) for v in (points - low).reshape(-1)]], canvas_h, canvas_w)
    mask = coco_masks.decode(coco_masks.merge(rles))
    return mask[-low[1] : -low[1] + height, -low[0] : -low[0] + width].astype(bool)


SLIVER_AREA = 20.0  # image px²: parts this small are counted but held to no IoU bar (see mask_ious)


def mask_ious(api, outlines: dict[int, np.ndarray]) -> list[dict]:
    """For each annotation: its pycocotools mask against its stored nucleus drawn the same way (coco_mask).

    Rows hold cell_id, origin, iou, whole (the nucleus lies wholly in the tile), split (the tile cuts
    it into several pieces: the export keeps the largest, so the reference is the piece the
    annotation overlaps most) and sliver (area under SLIVER_AREA: a few pixels, where whether the
    rasteriser fills one pixel more or less swings the IoU; a half-pixel strip along a border even
    rasterises to no pixel at all, in the reference and in the annotation alike).
    """
    rows = []
    for annotation in api.dataset["annotations"]:
        image = api.imgs[annotation["image_id"]]
        x0, y0 = _origin(image)
        width, height, downsample = image["width"], image["height"], image.get("downsample", 1.0)
        outline = outlines[annotation["cell_id"]]
        got = api.annToMask(annotation).astype(bool)
        want = coco_mask(outline, x0, y0, width, height, downsample)
        whole = coco_mask(outline, x0 - 2 * TILE, y0 - 2 * TILE, 5 * TILE, 5 * TILE, downsample).sum()
        pieces, labels = cv2.connectedComponents(want.astype(np.uint8), connectivity=8)
        if pieces > 2:
            want = labels == max(range(1, pieces), key=lambda k: int((got & (labels == k)).sum()))
        union = (got | want).sum()
        rows.append(
            {
                "cell_id": annotation["cell_id"],
                "origin": (x0, y0),
                "iou": (got & want).sum() / union if union else 1.0,
                "whole": bool(want.sum() == whole),
                "split": pieces > 2,
                "sliver": annotation["area"] < SLIVER_AREA,
                "got": got,
                "outline": outline,
            }
        )
    return rows


@pytest.fixture(scope="module")
def coco_set(stored, tmp_path_factory):
    slide, cells, _ = stored
    dest = tmp_path_factory.mktemp("out") / "coco"
    written = coco.write_coco(cells, dest, provenance(slide))
    return dest, written, pycocotools.COCO(str(dest / "annotations.json"))


@pytest.fixture(scope="module")
def yolo_set(stored, tmp_path_factory):
    slide, cells, _ = stored
    dest = tmp_path_factory.mktemp("out") / "yolo"
    return dest, yolo.write_yolo(cells, dest, provenance(slide))


def _origin(image: dict) -> tuple[int, int]:
    return image["level0_x"], image["level0_y"]


def test_coco_counts_match_the_nuclei_clipped_to_each_tile(stored, coco_set):
    _, _, outlines = stored
    dest, written, api = coco_set
    expected = {(cell_id, origin) for cell_id, outline in outlines.items() for origin in tiles_of(outline)}
    found = {(a["cell_id"], _origin(api.imgs[a["image_id"]])) for a in api.dataset["annotations"]}
    assert written == len(api.dataset["annotations"]) == len(expected)
    assert found == expected
    assert {_origin(i) for i in api.dataset["images"]} == {origin for _, origin in expected}, "only tiles with nuclei"
    crossing = [cell_id for cell_id, outline in outlines.items() if len(tiles_of(outline)) > 1]
    assert len(crossing) > 20, "the test needs nuclei across tile borders"
    assert [c["name"] for c in api.dataset["categories"]] == ["nucleus"]
    assert {a["iscrowd"] for a in api.dataset["annotations"]} == {0}


def test_coco_polygons_rasterise_back_to_the_stored_nuclei(stored, coco_set):
    _, _, outlines = stored
    _, _, api = coco_set
    rows = mask_ious(api, outlines)
    assert len(rows) == len(api.dataset["annotations"])
    for row in rows:
        if not row["sliver"]:  # whole nuclei and clipped parts alike
            assert row["iou"] >= 0.9, (row["cell_id"], row["origin"], row["iou"])
        if row["whole"]:
            # And the whole outline covers the nucleus's traced pixels.
            x0, y0 = row["origin"]
            traced = truth_mask(row["outline"], x0, y0, *row["got"].shape[::-1]).astype(bool)
            assert (row["got"] & traced).sum() / (row["got"] | traced).sum() >= 0.9, row["cell_id"]
    for annotation in api.dataset["annotations"]:
        image = api.imgs[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
    whole = [r for r in rows if r["whole"]]
    clipped = [r for r in rows if not r["whole"] and not r["sliver"]]
    assert len(whole) > 50 and len(clipped) > 20, "the test needs whole and clipped nuclei"
    assert sum(r["sliver"] for r in rows) <= 0.05 * len(rows), "slivers are counted, but must stay rare"


def test_coco_mask_check_fails_for_a_shifted_polygon(stored, coco_set):
    """The check above can fail: the same annotations moved by 3 px fall under the bar."""
    _, _, outlines = stored
    _, _, api = coco_set
    shifted = pycocotools.COCO()
    shifted.dataset = json.loads(json.dumps(api.dataset))
    for annotation in shifted.dataset["annotations"]:
        annotation["segmentation"] = [[v + 3 if k % 2 == 0 else v for k, v in enumerate(annotation["segmentation"][0])]]
    shifted.createIndex()
    rows = [r for r in mask_ious(shifted, outlines) if not r["sliver"]]
    assert all(r["iou"] < 0.9 for r in rows if r["whole"])
    assert sum(r["iou"] < 0.9 for r in rows) >= 0.9 * len(rows)


def test_coco_images_are_the_slide_tiles(stored, coco_set):
    slide, _, _ = stored
    dest, _, api = coco_set
    with open_slide(slide) as opened:
        for image in api.dataset["images"][:4]:
            jpeg = cv2.cvtColor(cv2.imread(str(dest / image["file_name"])), cv2.COLOR_BGR2RGB)
            assert jpeg.shape[:2] == (image["height"], image["width"])
            region = read_level_rgb(opened, *_origin(image), 0, image["width"], image["height"])
            assert np.abs(jpeg.astype(int) - region.astype(int)).mean() < 4
    assert Path(dest / "images" / f"slide07_x{image['level0_x']}_y{image['level0_y']}.jpg").is_file()


def test_coco_and_yolo_number_classes_in_the_vocabulary_order(stored, tmp_path):
    """A slide numbers classes as a batch does (CLASS_NAMES order), whichever classes it happens to hold."""
    slide, cells, outlines = stored
    table = pq.read_table(cells)
    names = ["epithelial" if i % 3 else "inflammatory" for i in table.column("cell_id").to_pylist()]
    (tmp_path / "segmentation").mkdir()
    classed = tmp_path / "segmentation" / "cells.parquet"
    pq.write_table(table.append_column("class", pa.array(names)), classed)
    coco.write_coco(classed, tmp_path / "coco", provenance(slide))
    document = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    category = {c["id"]: c["name"] for c in document["categories"]}
    assert category == {i + 1: name for i, name in enumerate(CLASS_NAMES)}
    for annotation in document["annotations"]:
        assert category[annotation["category_id"]] == ("epithelial" if annotation["cell_id"] % 3 else "inflammatory")
    yolo.write_yolo(classed, tmp_path / "yolo", provenance(slide))
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["names"] == dict(enumerate(CLASS_NAMES))
    used = {
        int(line.split()[0]) for label in (tmp_path / "yolo" / "labels").glob("*.txt") for line in label.read_text().splitlines()
    }
    assert used == {CLASS_NAMES.index("epithelial"), CLASS_NAMES.index("inflammatory")}


def test_yolo_labels_are_normalised_clipped_polygons(stored, yolo_set, coco_set):
    _, _, outlines = stored
    dest, written = yolo_set
    _, _, api = coco_set
    data = yaml.safe_load((dest / "data.yaml").read_text())
    assert data["names"] == {0: "nucleus"}
    labels = sorted((dest / "labels").glob("*.txt"))
    assert [p.stem for p in labels] == sorted(p.stem for p in (dest / "images").glob("*.jpg"))
    assert written == len(api.dataset["annotations"])
    parts = {cell_id: tiles_of(outline) for cell_id, outline in outlines.items()}
    lines_seen = 0
    for label in labels:
        x0, y0 = (int(v[1:]) for v in label.stem.split("_")[-2:])
        width, height = min(TILE, SPEC.width - x0), min(TILE, SPEC.height - y0)
        candidates = [(cell_id, p[(x0, y0)]) for cell_id, p in parts.items() if (x0, y0) in p]
        lines = label.read_text().split("\n")[:-1]
        assert len(lines) == len(candidates)
        for line in lines:
            fields = line.split()
            assert fields[0] == "0"
            values = np.asarray(fields[1:], float)
            assert len(values) % 2 == 0 and len(values) >= 6
            assert values.min() >= 0 and values.max() <= 1
            shape = Polygon(values.reshape(-1, 2) * (width, height) + (x0, y0))
            # The clipped polygon this line should be: the one it overlaps most.
            best = max(candidates, key=lambda c: c[1].intersection(shape).area)[1]
            assert shape.symmetric_difference(best).area <= 0.01 * best.area + 0.05
            lines_seen += 1
    assert lines_seen == written


def test_training_sets_replace_the_previous_folder_whole(stored, tmp_path):
    slide, cells, _ = stored
    dest = tmp_path / "coco"
    coco.write_coco(cells, dest, {**provenance(slide, tile_size=512), "slide_file": "old.svs"})
    assert len(list((dest / "images").iterdir())) == 4
    coco.write_coco(cells, dest, provenance(slide))
    document = json.loads((dest / "annotations.json").read_text())
    assert sorted(f"images/{p.name}" for p in (dest / "images").iterdir()) == sorted(i["file_name"] for i in document["images"])
    assert not list((dest / "images").glob("old_*")), "files of the previous export left in the folder"
    assert [p.name for p in tmp_path.iterdir()] == ["coco"], "no temporary folder left beside it"
