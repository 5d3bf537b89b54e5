"""Fluorescence through the public API and batches: real DSB images, the shipped fluorescence model, real readers.

Needs ../shared/data/nuclei_fluo_train (skips cleanly without it, as in a user's fresh clone),
except the settings checks, which need no data.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from wsi_assets.core.branch_settings import branch_settings_from_text
from wsi_assets.segmentation.metrics import match_instances
from wsi_assets.segmentation.settings import ConfigError, check_modality
from wsi_assets.slides.errors import SlideSettingsError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FLUO = SHARED / "nuclei_fluo_train" / "dsb2018_fluorescence"
HE = SHARED / "nuclei_train"
# A dense 520x696 field (313 nuclei) of an experiment the fluorescence model was not trained on
# (wsi_assets/training/fluorescence_split.csv).
DENSE = "dsbfluo_07fb37aafa662660"
F1_FLOOR = 0.7  # the model scores 0.80 on the dense field with µm/px estimated; the H&E path finds ~0

needs_data = pytest.mark.skipif(not FLUO.is_dir(), reason=f"{FLUO} not available")


def _pair(stem: str) -> tuple[np.ndarray, np.ndarray]:
    gray = cv2.imread(str(FLUO / "images" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    truth = cv2.imread(str(FLUO / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
    return gray, truth


def _f1(labels: np.ndarray, truth: np.ndarray) -> float:
    m = match_instances(labels, truth, 0.5)
    return 2 * m.tp / max(1, 2 * m.tp + m.fp + m.fn)


@pytest.fixture(scope="module")
def dense():
    return _pair(DENSE)


@pytest.fixture(scope="module")
def dense_result(dense):
    from wsi_assets.segmentation.image import segment_image_with_info

    return segment_image_with_info(dense[0])


@needs_data
def test_a_2d_channel_is_segmented_as_fluorescence_with_mpp_estimated(dense, dense_result):
    gray, truth = dense
    assert dense_result.labels.shape == gray.shape and dense_result.labels.dtype == np.int32
    assert _f1(dense_result.labels, truth) > F1_FLOOR
    info = dense_result.info
    assert (info["modality"], info["modality_source"], info["mpp_source"]) == (
        "fluorescence",
        "auto: 2-D image",
        "estimated from nucleus size",
    )
    assert 0.2 < info["mpp"] < 1.0 and info["model"].startswith("wsi-nuclei-fluo-unet")


@needs_data
def test_the_bright_field_path_fails_on_the_same_field(dense, dense_result):
    """Why the fluorescence path exists: the H&E model sees dark nuclei on light, and finds none here."""
    from wsi_assets.segmentation.image import segment_image

    gray, truth = dense
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    as_brightfield = segment_image(rgb, dense_result.mpp, modality="brightfield")
    assert _f1(as_brightfield, truth) < 0.3 < F1_FLOOR
    with pytest.raises(ValueError, match="2-D image is one fluorescence channel"):
        segment_image(gray, modality="brightfield")


@needs_data
def test_any_dtype_and_scale_gives_the_same_nuclei(dense, dense_result):
    from wsi_assets.segmentation.image import segment_image

    gray, truth = dense
    gray, truth = gray[:256, :320], truth[:256, :320]  # a corner: quicker, and the same for every dtype
    reference = segment_image(gray, mpp=dense_result.mpp)
    deep = gray.astype(np.uint16) * 257 + 1000  # a 16-bit camera's counts
    assert _f1(segment_image(deep, mpp=dense_result.mpp), reference) > 0.95
    rgb = np.repeat(gray[:, :, None], 3, axis=2)  # auto: bright objects on a dark background
    assert _f1(segment_image(rgb, mpp=dense_result.mpp), reference) > 0.95
    assert _f1(reference, truth) > F1_FLOOR


@needs_data
def test_a_large_plane_is_tiled_without_losing_or_doubling_nuclei(dense, dense_result):
    """Tiles of 192 model px (6 of them here) give the nuclei one pass gives: none doubled at a border."""
    from wsi_assets.segmentation.fluorescence import segment_fluorescence

    gray, truth = dense
    tiled = segment_fluorescence(gray, mpp=dense_result.mpp, tile_core_px=192, tile_margin_px=32)
    assert tiled.tiles > 4 and tiled.mpp_source == "given"
    assert abs(tiled.count - int(dense_result.labels.max())) <= 0.03 * dense_result.labels.max()
    assert abs(_f1(tiled.labels, truth) - _f1(dense_result.labels, truth)) < 0.03
    ids, pieces = np.unique(tiled.labels, return_counts=True)
    assert ids[0] == 0 and len(ids) - 1 == tiled.count, "labels are 1..n"


def _looks(path: Path) -> str:
    from wsi_assets.segmentation.modality import decide_modality

    return decide_modality(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])[0]


@needs_data
@pytest.mark.skipif(not HE.is_dir(), reason=f"{HE} not available")
def test_auto_tells_fluorescence_from_h_and_e():
    from wsi_assets.segmentation.modality import decide_modality

    # The darkest H&E tiles of the shared set (a dark purple fold) stay bright-field.
    he = [HE / "consep_train" / "images" / f"train_2_00{n}.png" for n in (1, 3, 4)] + sorted(
        (HE / "monuseg2018_train" / "images").glob("*.png")
    )[:2]
    fluo = sorted((FLUO / "images").glob("*.png"))[::100]
    assert [_looks(p) for p in he] == ["brightfield"] * len(he)
    assert [_looks(p) for p in fluo] == ["fluorescence"] * len(fluo)
    gray = cv2.imread(str(fluo[0]), cv2.IMREAD_GRAYSCALE)
    assert decide_modality(gray) == ("fluorescence", "auto: 2-D image")
    blue = np.zeros((*gray.shape, 3), np.uint8)
    blue[..., 2] = gray  # DAPI shown in blue
    assert decide_modality(blue)[0] == "fluorescence"
    assert decide_modality(blue, "brightfield") == ("brightfield", "given")


def test_modality_settings_are_checked_in_one_line():
    assert check_modality("Fluorescence") == "fluorescence"
    with pytest.raises(ConfigError, match=r"^segmentation setting modality = 'fluo': use auto, brightfield or fluorescence$"):
        check_modality("fluo")
    assert branch_settings_from_text("modality: fluorescence\n", "alice/inputs/main/branch.yaml").modality == "fluorescence"
    with pytest.raises(SlideSettingsError, match=r"branch.yaml: modality = 'dapi' must be auto, brightfield or fluorescence"):
        branch_settings_from_text("modality: dapi\n", "alice/inputs/main/branch.yaml")
    from wsi_assets.defs.resources import SegmentationResource

    with pytest.raises(Exception, match="use auto, brightfield or fluorescence"):
        SegmentationResource(modality="both")
    assert SegmentationResource(modality="fluorescence").batch_modality(None) == "fluorescence"
    assert SegmentationResource().batch_modality("brightfield") == "brightfield"


def test_a_model_card_states_the_modality_and_a_conflict_is_refused():
    from wsi_assets.models import SHIPPED_FLUORESCENCE_MODEL_FILE
    from wsi_assets.segmentation.image import segment_image
    from wsi_assets.segmentation.registry import model_modality

    assert model_modality(str(SHIPPED_FLUORESCENCE_MODEL_FILE)) == "fluorescence"
    assert model_modality("fluorescence-default") == "fluorescence"
    assert model_modality("default") is None
    with pytest.raises(ValueError, match="is a fluorescence model .* but modality = brightfield"):
        segment_image(np.zeros((32, 32, 3), np.uint8), 0.5, model=str(SHIPPED_FLUORESCENCE_MODEL_FILE), modality="brightfield")


@pytest.fixture(scope="module")
def fluorescence_batch(tmp_path_factory):
    """Three DSB fields uploaded as a batch (one as a 16-bit TIFF), through manifest, cells and every export."""
    from wsi_assets.batches.cells import segment_batch_images
    from wsi_assets.batches.manifest import build_manifest
    from wsi_assets.cells.cell_classifier import classifier_for
    from wsi_assets.batches.exports import write_batch_exports
    from wsi_assets.core.keys import SlideKey
    from wsi_assets.segmentation.classical import ClassicalSegmenter

    root = tmp_path_factory.mktemp("user_files")
    folder = root / "fay" / "inputs" / "main" / "plate"
    folder.mkdir(parents=True)
    stems = sorted(p.stem for p in (FLUO / "images").glob("*.png"))[:2] + [DENSE]
    truths = {}
    for n, stem in enumerate(stems):
        gray, truth = _pair(stem)
        if n == 2:  # a 16-bit camera image: Pillow would clip it to white if converted naively
            Image.fromarray((gray.astype(np.uint16) * 200 + 500)).save(folder / f"f{n}.tif")
            truths[f"f{n}.tif"] = truth
        else:
            Image.fromarray(gray).save(folder / f"f{n}.png")
            truths[f"f{n}.png"] = truth
    key = SlideKey("fay", "main", "plate")
    manifest = build_manifest(folder, root, key, None, None, 0.5, workers=1)
    out = root / "out"
    out.mkdir()
    # The bright-field segmenter is the classical one: fluorescence images must never reach it.
    segmented = segment_batch_images(
        manifest, folder, out / "cells.parquet", ClassicalSegmenter(threads=1), classifier_for(None), workers=1
    )
    written = write_batch_exports(out / "cells.parquet", manifest, out, images_dir=folder)
    return {"manifest": manifest, "out": out, "segmented": segmented, "written": written, "truths": truths, "folder": folder}


@needs_data
def test_a_fluorescence_batch_is_segmented_by_the_fluorescence_model(fluorescence_batch):
    import pandas as pd

    manifest = fluorescence_batch["manifest"]
    assert [(i.modality, i.mpp_source) for i in manifest.images] == [("fluorescence", "nucleus-size estimate")] * 3
    assert len({i.mpp for i in manifest.images}) == 1, "one µm/px for the batch"
    cells = pd.read_parquet(fluorescence_batch["out"] / "cells.parquet")
    assert set(cells["class"]) == {"unclassified"} and set(cells["modality"]) == {"fluorescence"}
    dense = cells[cells["image"] == "f2.tif"]
    truth = fluorescence_batch["truths"]["f2.tif"]
    assert 0.8 * truth.max() < len(dense) < 1.2 * truth.max(), "the 16-bit field's nuclei are found (not clipped to white)"


@needs_data
def test_a_fluorescence_batch_exports_read_back_with_real_readers(fluorescence_batch):
    from openpyxl import load_workbook
    from pycocotools.coco import COCO

    out = fluorescence_batch["out"]
    coco = COCO(str(out / "coco.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    annotations = coco.loadAnns(coco.getAnnIds())
    assert annotations and {names[a["category_id"]] for a in annotations} == {"unclassified"}
    assert {i["modality"] for i in coco.loadImgs(coco.getImgIds())} == {"fluorescence"}
    assert int(coco.annToMask(annotations[0]).sum()) > 10
    sheet = load_workbook(out / "summary.xlsx", read_only=True)["images"]
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert [row[header.index("modality")] for row in rows] == ["fluorescence"] * 3
    assert sum(row[header.index("unclassified_count")] for row in rows) == len(annotations)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_counts"]["unclassified"] == len(annotations)
    data = (out / "yolo" / "data.yaml").read_text()
    assert "unclassified" in data
