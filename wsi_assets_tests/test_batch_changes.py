"""A batch image that changes while its batch is processed: left out of that run in one line, never segmented under the old manifest entry."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from wsi_assets.batches.cells import segment_batch_images
from wsi_assets.batches.images import BatchImageChanged, read_batch_image
from wsi_assets.batches.manifest import NEW, build_manifest, load_manifest, without_changed
from wsi_assets.cells.cell_classifier import classifier_for
from wsi_assets.core.keys import SlideKey
from wsi_assets.segmentation.classical import ClassicalSegmenter

SIDE = 96
CHANGED = "changed while its batch was being processed; it is segmented in the batch's next run"


def field(seed: int) -> np.ndarray:
    """A small H&E-like field: pink stroma and a few dark purple nuclei, different for every seed."""
    rng = np.random.default_rng(seed)
    image = np.full((SIDE, SIDE, 3), (235, 190, 215), np.uint8)
    for x, y in rng.integers(8, SIDE - 8, (6, 2)):
        cv2.circle(image, (int(x), int(y)), 5, (80, 40, 140), -1)
    return image


def upload_batch(root: Path, user: str, names: list[str]) -> Path:
    folder = root / user / "inputs" / "main" / "fields"
    folder.mkdir(parents=True)
    for seed, name in enumerate(names, 1):
        Image.fromarray(field(seed)).save(folder / name, dpi=(50_800, 50_800))  # 0.5 µm/px stated
    return folder


def rewrite(path: Path, seed: int = 99) -> None:
    Image.fromarray(field(seed)).save(path, dpi=(50_800, 50_800))


def test_an_image_rewritten_after_its_manifest_is_left_out_with_why(tmp_path):
    folder = upload_batch(tmp_path, "erin", ["a.tif", "b.tif", "c.tif"])
    key = SlideKey("erin", "main", "fields")
    manifest = build_manifest(folder, tmp_path, key, None, None, 0.5, workers=1)
    assert [i.change for i in manifest.images] == [NEW] * 3
    rewrite(folder / "b.tif")
    (folder / "c.tif").unlink()

    segmented = segment_batch_images(
        manifest, folder, tmp_path / "cells.parquet", ClassicalSegmenter(threads=1), classifier_for(None), workers=1
    )

    assert segmented.changed == [
        ("b.tif", CHANGED),
        ("c.tif", "was removed while its batch was being processed, so it is not in this result"),
    ]
    assert set(segmented.counts) == {"a.tif"}
    images = set(pq.read_table(tmp_path / "cells.parquet", columns=["image"]).column("image").to_pylist())
    assert images <= {"a.tif"}, "no cell of the rewritten or removed image is in the table"
    published = without_changed(manifest, segmented.changed)
    assert [i.name for i in published.images] == ["a.tif"]
    assert dict(published.rejected)["b.tif"] == CHANGED


def test_a_reader_expecting_a_hash_refuses_other_bytes(tmp_path):
    folder = upload_batch(tmp_path, "erin", ["a.tif"])
    first = read_batch_image(folder / "a.tif")
    assert read_batch_image(folder / "a.tif", first.sha256).sha256 == first.sha256
    rewrite(folder / "a.tif")
    with pytest.raises(BatchImageChanged, match=f"^{CHANGED}$"):
        read_batch_image(folder / "a.tif", first.sha256)


@pytest.fixture(scope="module")
def run_with_a_rewrite(tmp_path_factory):
    from dagster import DagsterInstance

    from wsi_assets.definitions import defs
    from wsi_assets.defs.resources import SegmentationResource, UserFilesResource

    root = tmp_path_factory.mktemp("user_files")
    folder = upload_batch(root, "frank", ["a.tif", "b.tif"])

    class RewriteBeforeSegmenting(SegmentationResource):
        """A user who overwrites b.tif just as the run reaches segmentation."""

        def segmenter(self, branch_model=None):
            rewrite(folder / "b.tif")
            return ClassicalSegmenter(threads=1)

    key, outputs = "frank/main/fields", root / "frank" / "outputs" / "main" / "fields"
    user_files = UserFilesResource(root=str(root))
    job = defs.resolve_job_def("process_batch")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("batches", [key])
        first = job.execute_in_process(
            instance=instance,
            partition_key=key,
            raise_on_error=False,
            resources={"user_files": user_files, "segmentation": RewriteBeforeSegmenting(model="classical")},
        )
        logs = [entry.user_message for entry in instance.all_logs(first.run_id)]
        published = load_manifest(outputs / "manifest.json")
        rejected = json.loads((outputs / "rejected.json").read_text())
        cells = set(pq.read_table(outputs / "cells.parquet", columns=["image"]).column("image").to_pylist())
        second = job.execute_in_process(
            instance=instance,
            partition_key=key,
            raise_on_error=False,
            resources={"user_files": user_files, "segmentation": SegmentationResource(model="classical")},
        )
    return {
        "first": first,
        "logs": logs,
        "manifest": published,
        "rejected": rejected,
        "cells": cells,
        "second": second,
        "next_manifest": load_manifest(outputs / "manifest.json"),
    }


def test_a_run_publishes_a_manifest_of_the_bytes_it_segmented(run_with_a_rewrite):
    run = run_with_a_rewrite
    assert run["first"].success
    assert [i.name for i in run["manifest"].images] == ["a.tif"]
    assert dict(run["manifest"].rejected) == {"b.tif": CHANGED}
    assert {"file": "b.tif", "why": CHANGED} in run["rejected"]
    assert run["cells"] <= {"a.tif"}
    assert any(line.endswith(f"left out b.tif: {CHANGED}") for line in run["logs"])


def test_the_next_run_segments_the_image_as_it_now_is(run_with_a_rewrite):
    run = run_with_a_rewrite
    assert run["second"].success
    changes = {i.name: i.change for i in run["next_manifest"].images}
    assert changes == {"a.tif": "unchanged", "b.tif": "new"}
    assert run["next_manifest"].rejected == []
