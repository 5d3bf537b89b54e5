"""Cell classes on CoNSeP's held-out training tiles, through the public API, as the issue scores them.

Every crop of the 5 held-out tiles (wsi_assets/training/split.py) goes through
`wsi_assets.segment_and_classify(rgb, 0.25, model=...)`. Predicted and annotated nuclei are paired
by centroid within 3 µm (HoVer-Net's rule, 12 px at 40x), one to one, nearest first. Detection F1
counts pairs; a class's F1 counts a pair as a true positive when both sides have that class
(an unpaired nucleus, or a pair of other classes, is a false positive or negative of its class).
Beside it, the same counts weighted as HoVer-Net's evaluation code does (a misclassified pair
counts twice), the definition behind the published per-class figures.
The annotated outlines scored directly by the classifier are the model card's figures.
Each figure is printed beside the issue's target (TARGETS), met or not.

`--classifier` picks the branch.yaml choice to score: "forest" (the default: the classifier
segment_and_classify picks for the model), a forest file (FILE.npz), "cnn" or "forest+cnn". The last
two cannot go through segment_and_classify (it has no network): each crop goes through the same
steps (the crop at the model's µm/px, segmenter + embedding, measure_labels with the crop's stain
vectors), then the product's own `NucleusTyper` (what segmentation runs for such a branch, the newest
shipped network) and `classification_method(choice, ...)` (what classification runs on the stored
columns). Only the slide's tiling, the cell table and its row groups are skipped.

    python benchmarks/cell_classes_validation.py [--model learned|classical|default|PATH] [--classifier forest|cnn|forest+cnn|FILE.npz]
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np


import wsi_assets
from wsi_assets.cells.cell_classifier import classifier_for
from wsi_assets.cells.classification import classification_method
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.nucleus_cnn import load_nucleus_cnn
from wsi_assets.cells.nucleus_typer import CNN_METHODS, NucleusTyper, newest_shipped_cnn
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.image_classes import labels_and_classes, measured_nuclei
from wsi_assets.cells.classes import CLASS_NAMES, CONSEP_TYPE_CLASSES
from wsi_assets.training.cell_classifier_training import PAIR_UM, label_centroids, pair_by_centroid
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train" / "consep_train"
MPP = 0.25
# Issue 33's targets: detection F1, and each class's F1 with HoVer-Net's weighting.
TARGETS = {"detection": 0.78, "inflammatory": 0.70, "epithelial": 0.70, "spindle": 0.60}


def add_crop(tally: Counter, pred_xy: np.ndarray, pred_class: list[str], true_xy: np.ndarray, true_class: list[str]) -> None:
    """Count one crop's detections and per-class outcomes (centroids in pixels at MPP)."""
    pairs = pair_by_centroid(pred_xy, true_xy, PAIR_UM / MPP)
    tally["tp"] += len(pairs)
    tally["fp"] += len(pred_xy) - len(pairs)
    tally["fn"] += len(true_xy) - len(pairs)
    paired_p = {i for i, _ in pairs}
    paired_t = {j for _, j in pairs}
    for i, j in pairs:
        for name in CLASS_NAMES:
            p, t = pred_class[i] == name, true_class[j] == name
            tally[(name, "tp")] += p and t
            tally[(name, "fp")] += p and not t
            tally[(name, "fn")] += t and not p
            tally[(name, "paired fp")] += p and not t
            tally[(name, "paired fn")] += t and not p
    for i in set(range(len(pred_xy))) - paired_p:
        tally[(pred_class[i], "fp")] += 1
    for j in set(range(len(true_xy))) - paired_t:
        tally[(true_class[j], "fn")] += 1


def hovernet_f1(tally: Counter, name: str) -> float:
    """Graham et al. 2019's type F1 as their evaluation code computes it: a paired nucleus of the
    wrong class weighs 2, an unpaired one 1 (the TN term drops out, as their code keeps only
    pairs where either side has the class). Stricter than the plain F1 on misclassification."""
    tp, paired_fp, paired_fn = tally[(name, "tp")], tally[(name, "paired fp")], tally[(name, "paired fn")]
    unpaired_fp, unpaired_fn = tally[(name, "fp")] - paired_fp, tally[(name, "fn")] - paired_fn
    denominator = 2 * tp + 2 * paired_fp + 2 * paired_fn + unpaired_fp + unpaired_fn
    return 2 * tp / denominator if denominator else float("nan")


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def _against_target(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    return f"  target >= {TARGETS[name]:.2f}: {'met' if value >= TARGETS[name] else 'not met'}"


def print_scores(tally: Counter) -> None:
    detection = f1(tally["tp"], tally["fp"], tally["fn"])
    print(f"detection F1 (centroids within {PAIR_UM} µm): {detection:.3f}{_against_target('detection', detection)}")
    for name in CLASS_NAMES:
        plain, weighted = f1(tally[(name, "tp")], tally[(name, "fp")], tally[(name, "fn")]), hovernet_f1(tally, name)
        print(f"  {name:13s} F1 {plain:.3f}  (HoVer-Net's weighting: {weighted:.3f}){_against_target(name, weighted)}")


def typed_by_network(rgb: np.ndarray, segmenter, typer: NucleusTyper, choice: str) -> tuple[np.ndarray, dict[int, str]]:
    """segment_and_classify's steps, with the product's NucleusTyper and `classification_method(choice)` (see the docstring)."""
    model_labels, _, ids, columns = measured_nuclei(rgb, MPP, segmenter, typer)
    method = classification_method(choice, LymphocyteRule(), None, getattr(segmenter, "embedding", None), typer.identity())
    predicted = method.classify(columns) if len(ids) else np.zeros(0, object)
    return labels_and_classes(model_labels, rgb.shape[:2], ids, predicted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="learned")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--classifier",
        default="forest",
        help="forest (the one segment_and_classify picks for the model), cnn, forest+cnn, or a classifier file",
    )
    args = parser.parse_args()
    types: dict[tuple[str, int], str] = {}
    with open(args.data / "types.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            types[(row["stem"], int(row["label"]))] = CONSEP_TYPE_CLASSES[int(row["type_id"])]
    stems = sorted({s for s, _ in types if consep_tile(s) in HELD_OUT_CONSEP_TILES})
    # The classifier segment_and_classify picks for this model's nuclei (with or without its embedding).
    segmenter = get_segmenter(args.model)
    forest_file = None if args.classifier in ("forest", *CNN_METHODS) else Path(args.classifier)
    classifier = classifier_for(getattr(segmenter, "embedding", None), forest_file)
    typer, label = None, classifier.name
    if args.classifier in CNN_METHODS:
        network = newest_shipped_cnn()
        typer = NucleusTyper(load_nucleus_cnn(network), float(segmenter.mpp), network.name)
        label = f"{args.classifier} ({network.name}" + (f" + {classifier.name})" if args.classifier != "cnn" else ")")
    tally = Counter()
    started = time.perf_counter()
    for stem in stems:
        rgb = cv2.cvtColor(cv2.imread(str(args.data / "images" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        truth_labels = cv2.imread(str(args.data / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
        if typer is None:
            labels, classes = wsi_assets.segment_and_classify(rgb, MPP, model=args.model, classifier=classifier)
        else:
            labels, classes = typed_by_network(rgb, segmenter, typer, args.classifier)
        pred_ids, pred_xy = label_centroids(labels.astype(np.int64))
        true_ids, true_xy = label_centroids(truth_labels)
        pred_class = [classes.get(int(i), "other") for i in pred_ids]
        true_class = [types.get((stem, int(i)), "other") for i in true_ids]
        add_crop(tally, pred_xy, pred_class, true_xy, true_class)

    print(
        f"{len(stems)} held-out crops of tiles {', '.join(HELD_OUT_CONSEP_TILES)}, model {args.model}, classifier {label}, {time.perf_counter() - started:.1f} s"
    )
    print_scores(tally)


if __name__ == "__main__":
    main()
