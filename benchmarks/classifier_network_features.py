"""Do the nucleus network's own features type cells better than the 12 measurements? (issue 14)

For every CoNSeP crop (`nuclei_train/consep_train`, resampled to the model's 0.5 µm/px) the
shipped nucleus model segments the crop, each nucleus is measured (the classifier's 12
features), and the network's decoder activations are pooled per nucleus: the full-resolution
level averaged over the nucleus, the coarser levels (1/2 … 1/16, 32-192 channels) read at its
centroid. Classifiers are fitted on the 22 training tiles' nuclei (typed by the annotated nucleus
within 3 µm, crop-edge nuclei left out, as `cell_classifier_training` does) and scored on the 5
held-out tiles two ways:
- paired: the held-out nuclei that pair with annotated ones (the classifier card's figure);
- end to end: every predicted nucleus classified and paired by centroid with every annotated one,
  as `benchmarks/cell_classes_validation.py` scores `segment_and_classify` (issue 14's rule).

    python benchmarks/classifier_network_features.py [--data …/consep_train]

A measurement, not a product path: the shipped pipeline classifies on the 12 measurements.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cell_classes_validation import DATA, MPP, add_crop, print_scores

from wsi_assets.cells.cell_classifier import FEATURE_COLUMNS
from wsi_assets.cells.measurements import measure_labels
from wsi_assets.cells.stain_vectors import estimate_stain_vectors
from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.training.cell_classifier_training import _typed_labels, label_centroids, per_class_f1, read_types
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile
from wsi_assets.training.train import load_trained_net

MODEL_MPP = 0.5


def decoder_levels(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The U-Net's bottleneck and each decoder level's output, coarsest first."""
    skips, outputs = [], []
    for i, block in enumerate(net.down):
        x = block(x)
        if i < len(net.down) - 1:
            skips.append(x)
            x = F.max_pool2d(x, 2)
    outputs.append(x)
    for i, (up, merge) in enumerate(zip(net.up, net.merge)):
        x = merge(torch.cat([up(x), skips[len(skips) - 1 - i]], 1))
        outputs.append(x)
    return outputs


def crop_nuclei(net, segmenter, folder: Path, stem: str, types: dict) -> dict:
    rgb40 = cv2.cvtColor(cv2.imread(str(folder / "images" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
    truth40 = cv2.imread(str(folder / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
    size = (round(rgb40.shape[1] * MPP / MODEL_MPP), round(rgb40.shape[0] * MPP / MODEL_MPP))
    rgb = cv2.resize(rgb40, size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(truth40.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
    labels, typed, _ = _typed_labels(truth, rgb, stem, types, segmenter, MODEL_MPP)
    ids, columns, area = measure_labels(labels, rgb, MODEL_MPP, estimate_stain_vectors(rgb))
    columns["area_um2"] = area
    with torch.inference_mode():
        levels = decoder_levels(net, torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0)
    label_ids, centroids = label_centroids(labels)
    order = {int(label): k for k, label in enumerate(label_ids)}
    rows = [order[int(label)] for label in ids]
    flat = labels.ravel()
    full = levels[-1][0].numpy().reshape(levels[-1].shape[1], -1)
    count = np.maximum(np.bincount(flat, minlength=labels.max() + 1), 1)
    means = np.stack([np.bincount(flat, channel, minlength=labels.max() + 1) for channel in full], 1) / count[:, None]
    where = torch.from_numpy(centroids[rows] / np.array(labels.shape[::-1]) * 2 - 1).float()[None, None]
    coarse = [F.grid_sample(level, where, align_corners=False)[0, :, 0].T.numpy() for level in levels[:-1]] if len(rows) else []
    hand = np.stack([columns[c] for c in FEATURE_COLUMNS], 1) if len(ids) else np.zeros((0, len(FEATURE_COLUMNS)))
    network = np.concatenate([means[ids], *coarse], 1) if len(ids) else np.zeros((0, sum(level.shape[1] for level in levels)))
    cut = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    true_ids, true_xy = label_centroids(truth40.astype(np.int64))
    return {
        "tile": consep_tile(stem),
        "hand": hand.astype(np.float32),
        "network": network.astype(np.float32),
        "typed": [typed.get(int(label)) if int(label) not in cut else None for label in ids],
        "xy40": centroids[rows] * (MODEL_MPP / MPP),  # pixel centres at the 40x scale of the annotation
        "true_xy40": true_xy,
        "true_class": [types.get((stem, int(i)), "other") for i in true_ids],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    types = read_types(args.data)
    net = load_trained_net(SHIPPED_MODEL_FILE).eval()
    segmenter = get_segmenter("learned", device="cpu")
    crops = [crop_nuclei(net, segmenter, args.data, stem, types) for stem in sorted({s for s, _ in types})]
    print(
        f"{len(crops)} crops segmented and pooled in {time.perf_counter() - started:.0f} s ({segmenter.name} v{segmenter.version})"
    )

    def features(crop, kind):
        return crop["hand"] if kind == "hand" else np.concatenate([crop["hand"], crop["network"]], 1)

    models = {
        "12 measurements, forest (shipped kind)": (
            "hand",
            lambda: RandomForestClassifier(
                n_estimators=60, max_depth=14, min_samples_leaf=8, class_weight="balanced_subsample", random_state=0, n_jobs=1
            ),
        ),
        "measurements + network, forest": (
            "both",
            lambda: RandomForestClassifier(
                n_estimators=60, max_depth=14, min_samples_leaf=8, class_weight="balanced_subsample", random_state=0, n_jobs=1
            ),
        ),
        "measurements + network, logistic": (
            "both",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced", C=0.1)),
        ),
    }
    train = [c for c in crops if c["tile"] not in HELD_OUT_CONSEP_TILES]
    held = [c for c in crops if c["tile"] in HELD_OUT_CONSEP_TILES]
    for name, (kind, make) in models.items():
        x = np.concatenate([features(c, kind)[[t is not None for t in c["typed"]]] for c in train])
        y = np.concatenate([np.array([t for t in c["typed"] if t is not None], object) for c in train]).astype(str)
        model = make().fit(x, y)
        paired_truth, paired_pred, tally = [], [], Counter()
        for crop in held:
            predicted = model.predict(features(crop, kind)) if len(crop["hand"]) else np.zeros(0, str)
            keep = [t is not None for t in crop["typed"]]
            paired_truth += [t for t in crop["typed"] if t is not None]
            paired_pred += list(predicted[keep])
            add_crop(tally, crop["xy40"], list(predicted), crop["true_xy40"], crop["true_class"])
        print(f"\n{name}: {x.shape[1]} features, {len(y)} training nuclei")
        print(f"  paired held-out nuclei ({len(paired_truth)}): {per_class_f1(np.array(paired_truth), np.array(paired_pred))}")
        print("  end to end on the held-out crops:")
        print_scores(tally)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
