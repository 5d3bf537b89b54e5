"""Where the learned model's errors are on the held-out MoNuSeg images, counted by kind.

An unmatched prediction (no true nucleus with IoU > 0.5) is "on no nucleus" when less than 20% of
it lies in annotated nuclei, "a split" when the true nucleus it mostly covers is also mostly covered
by another prediction, else "low IoU". Unmatched true nuclei likewise: "missed", "merged" (the
prediction covering it also covers another), or "low IoU".

    python benchmarks/monuseg_errors.py [--model learned|classical|PATH]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from wsi_assets.core.images import read_image_file_rgb
from wsi_assets.segmentation.image import segment_image
from wsi_assets.segmentation.metrics import compute_overlaps
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.training.data import read_labels
from wsi_assets.training.split import HELD_OUT_MONUSEG

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train" / "monuseg2018_train"
MPP = 0.25  # MoNuSeg 40x


def error_kinds(pred: np.ndarray, true: np.ndarray) -> Counter:
    o = compute_overlaps(pred, true)
    inter = o.intersection.toarray().T  # (pred, true), small per image
    matched = o.iou.toarray().T > 0.5
    kinds = Counter(predicted=o.pred_ids.size, true=o.true_ids.size, matched=int(matched.any(1).sum()))
    for p in np.flatnonzero(~matched.any(1)):
        if inter[p].sum() < 0.2 * o.pred_areas[p]:
            kinds["prediction on no nucleus"] += 1
        elif (inter[:, inter[p].argmax()] > 0.2 * o.pred_areas).sum() >= 2:
            kinds["prediction is a split"] += 1
        else:
            kinds["prediction with IoU < 0.5"] += 1
    for t in np.flatnonzero(~matched.any(0)):
        if inter[:, t].sum() < 0.2 * o.true_areas[t]:
            kinds["nucleus missed"] += 1
        elif (inter[inter[:, t].argmax()] > 0.2 * o.true_areas).sum() >= 2:
            kinds["nucleus merged"] += 1
        else:
            kinds["nucleus with IoU < 0.5"] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="learned")
    args = parser.parse_args()
    segmenter = get_segmenter(args.model, device="cpu")
    total = Counter()
    for stem in HELD_OUT_MONUSEG:
        rgb = read_image_file_rgb(args.data / "images" / f"{stem}.png")
        true = read_labels(args.data / "labels" / f"{stem}.png")
        total += error_kinds(segment_image(rgb, MPP, model=segmenter), true)
    print(f"{segmenter.name} v{segmenter.version} on {len(HELD_OUT_MONUSEG)} held-out MoNuSeg images")
    for kind, count in total.items():
        print(f"  {kind}: {count}")


if __name__ == "__main__":
    main()
