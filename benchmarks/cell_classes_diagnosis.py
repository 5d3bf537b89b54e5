"""Where cell typing loses on CoNSeP's held-out tiles: finding the nuclei, or typing them? (issue 33)

For every crop of the 5 held-out tiles (wsi_assets/training/split.py), at CoNSeP's 0.25 µm/px:
1. the shipped segmenter's recall per class (annotated nuclei of the class paired with a found one,
   centroids within 3 µm, one to one), run as the product runs it (resampled to the model's
   0.5 µm/px) and at CoNSeP's native 0.25 µm/px (the crop given to the network unresampled);
2. each classifier's per-class F1 on the annotated (true) outlines and on the found outlines, both
   as plain F1 and with HoVer-Net's weighting (`cell_classes_validation.py`):
   - true outlines: every annotated nucleus, measured / cropped on its own outline (pairs are
     given, so only typing is scored);
   - found, matched: only the found nuclei paired with an annotated one (typing alone);
   - found, end to end: every found nucleus (what `cell_classes_validation.py` scores).
Classifiers: the shipped forest (measurements + the segmenter's embedding), and the nucleus
classifier network when given (`--cnn FILE.onnx`, or `--cnn-run FOLDER` for a training's newest
checkpoint), and the mean of the two's class probabilities. Also each one's CPU seconds per 1,000 nuclei (one thread; the network's crops included).

    python benchmarks/cell_classes_diagnosis.py [--cnn wsi_assets/models/nucleus_classifier_cnn_v1.onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from cell_classes_validation import DATA, MPP, add_crop, f1, hovernet_f1

from wsi_assets.cells.cell_classifier import classifier_for
from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.measurements import measure_labels
from wsi_assets.cells.stain_vectors import estimate_stain_vectors
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, embeddings_at, label_centroids_of
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.image import resample_image, resize_labels
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.training.cell_classifier_training import PAIR_UM, label_centroids, pair_by_centroid, read_types
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile


def load_cnn(args):
    if args.cnn:
        from wsi_assets.cells.nucleus_cnn import load_nucleus_cnn

        return load_nucleus_cnn(args.cnn)
    if args.cnn_run:
        from wsi_assets.cells.nucleus_cnn import nucleus_cnn_from_bytes
        from wsi_assets.training.checkpoints import latest_checkpoint
        from wsi_assets.training.nucleus_cnn_export import checkpoint_network
        from wsi_assets.training.nucleus_cnn_net import network_onnx

        path = latest_checkpoint(args.cnn_run)
        net, state = checkpoint_network(path)
        print(
            f"network: {path} (step {state['step']} of {state['steps']}, stain normalisation {state.get('normalisation') or 'none'})"
        )
        info = {"name": f"nucleus_classifier_cnn@{path.name}", "normalisation": state.get("normalisation")}
        return nucleus_cnn_from_bytes(network_onnx(net), CLASS_NAMES, info)
    return None


class Classifiers:
    """Each classifier's classes for a crop's nuclei at the model's µm/px, timing each."""

    def __init__(self, forest, cnn):
        self.forest, self.cnn = forest, cnn
        self.seconds, self.nuclei = Counter(), Counter()

    def names(self) -> list[str]:
        return ["forest"] + (["cnn", "forest+cnn"] if self.cnn else [])

    def classify(self, rgb: np.ndarray, labels: np.ndarray, maps) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        started = time.process_time()
        ids, columns, area = measure_labels(labels, rgb, 0.5, estimate_stain_vectors(rgb))
        columns["area_um2"] = area
        if len(ids):
            columns[EMBEDDING_COLUMN] = embeddings_at(maps, *label_centroids_of(labels, ids))
        names = np.asarray(CLASS_NAMES, object)
        forest = (
            self.forest.probabilities(columns)[:, [self.forest.classes.index(c) for c in CLASS_NAMES]]
            if len(ids)
            else np.zeros((0, len(names)))
        )
        out = {"forest": names[forest.argmax(1)]}
        self.seconds["forest"] += time.process_time() - started
        self.nuclei["forest"] += len(ids)
        if self.cnn:
            started = time.process_time()
            _, crops = self.cnn.crops(rgb, labels, ids)
            cnn = self.cnn.probabilities(crops)[:, [self.cnn.classes.index(c) for c in CLASS_NAMES]]
            out["cnn"] = names[cnn.argmax(1)]
            self.seconds["cnn"] += time.process_time() - started
            self.nuclei["cnn"] += len(ids)
            # the two read different evidence (measurements + the segmenter's embedding; pixels): their mean
            out["forest+cnn"] = names[(forest + cnn).argmax(1)]
        return ids, out


def add_given(tally: Counter, predicted: np.ndarray, truth: np.ndarray, missed: np.ndarray) -> None:
    """add_crop's counts when every nucleus is given (paired with itself), and `missed` ones were never seen."""
    for p_name, t_name in zip(predicted.tolist(), truth.tolist()):
        for name in CLASS_NAMES:
            p, t = p_name == name, t_name == name
            tally[(name, "tp")] += p and t
            for side, hit in (("fp", p and not t), ("fn", t and not p)):
                tally[(name, side)] += hit
                tally[(name, f"paired {side}")] += hit
    for t_name in missed.tolist():
        tally[(t_name, "fn")] += 1


def scores(tally: Counter) -> dict:
    return {
        name: {
            "f1": round(f1(tally[(name, "tp")], tally[(name, "fp")], tally[(name, "fn")]), 4),
            "f1_hovernet": round(hovernet_f1(tally, name), 4),
        }
        for name in CLASS_NAMES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cnn", type=Path, help="a nucleus classifier network file (.onnx with its card)")
    parser.add_argument("--cnn-run", type=Path, help="a nucleus_cnn training folder: score its newest checkpoint")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    types = read_types(args.data)
    stems = sorted({s for s, _ in types if consep_tile(s) in HELD_OUT_CONSEP_TILES})
    segmenter = get_segmenter("learned", device="cpu")
    classifiers = Classifiers(classifier_for(segmenter.embedding), load_cnn(args))
    found_per_class = {res: Counter() for res in ("0.5", "0.25")}
    truth_per_class, detection = Counter(), {res: Counter() for res in ("0.5", "0.25")}
    tallies = defaultdict(Counter)  # (classifier, "true"|"found") -> add_crop tally
    matched = defaultdict(lambda: ([], []))  # classifier -> (truth, predicted) of found nuclei paired with annotated ones
    started = time.perf_counter()
    for stem in stems:
        rgb40 = cv2.cvtColor(cv2.imread(str(args.data / "images" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        truth40 = cv2.imread(str(args.data / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
        true_ids, true_xy = label_centroids(truth40)
        true_class = np.array([types.get((stem, int(i)), "other") for i in true_ids], object)
        truth_per_class.update(true_class.tolist())
        rgb = resample_image(rgb40, MPP / 0.5)
        labels_batch, maps = segment_with_embeddings(segmenter, rgb[np.newaxis])
        found = np.asarray(labels_batch)[0].astype(np.int32)
        native = np.asarray(segmenter.segment_batch(rgb40[np.newaxis]))[0].astype(np.int32)
        # 2x nearest upsampling moves a label's centroid to exactly twice its own
        found_ids, found_xy05 = label_centroids(found)
        for res, xy in (("0.5", found_xy05 * 2), ("0.25", label_centroids(native)[1])):
            pairs = pair_by_centroid(xy, true_xy, PAIR_UM / MPP)
            found_per_class[res].update(true_class[[j for _, j in pairs]].tolist())
            detection[res].update(tp=len(pairs), fp=len(xy) - len(pairs), fn=len(true_xy) - len(pairs))
        ids, predicted = classifiers.classify(rgb, found, maps[0])
        assert np.array_equal(ids, found_ids)
        pairs = pair_by_centroid(found_xy05 * 2, true_xy, PAIR_UM / MPP)
        truth05 = resize_labels(truth40, rgb.shape[:2])
        given_ids, given = classifiers.classify(rgb, truth05, maps[0])
        # annotated nuclei too small to survive 0.5 µm/px stay unpaired (a miss of their class)
        kept = np.isin(true_ids, given_ids)
        for name in classifiers.names():
            add_crop(tallies[(name, "found")], found_xy05 * 2, list(predicted[name]), true_xy, list(true_class))
            add_given(tallies[(name, "true")], given[name], true_class[np.searchsorted(true_ids, given_ids)], true_class[~kept])
            matched[name][0].extend(true_class[[j for _, j in pairs]].tolist())
            matched[name][1].extend(predicted[name][[i for i, _ in pairs]].tolist())

    result = {
        "crops": len(stems),
        "held_out_tiles": list(HELD_OUT_CONSEP_TILES),
        "segmenter": f"{segmenter.name} v{segmenter.version}",
        "annotated_nuclei": {name: truth_per_class[name] for name in CLASS_NAMES},
        "recall": {},
        "detection_f1": {},
        "classifiers": {},
    }
    print(
        f"{len(stems)} held-out crops of tiles {', '.join(HELD_OUT_CONSEP_TILES)}, {result['segmenter']}, {time.perf_counter() - started:.0f} s"
    )
    print("\nsegmenter recall per class (annotated nuclei found within 3 µm):")
    for res in ("0.5", "0.25"):
        recall = {
            name: round(found_per_class[res][name] / truth_per_class[name], 4) if truth_per_class[name] else float("nan")
            for name in CLASS_NAMES
        }
        d = detection[res]
        result["recall"][res] = recall
        result["detection_f1"][res] = round(f1(d["tp"], d["fp"], d["fn"]), 4)
        print(
            f"  at {res} µm/px: "
            + "  ".join(f"{n} {r:.3f}" for n, r in recall.items())
            + f"  (detection F1 {result['detection_f1'][res]:.3f})"
        )
    from wsi_assets.training.cell_classifier_training import per_class_f1

    for name in classifiers.names():
        true_scores, found_scores = scores(tallies[(name, "true")]), scores(tallies[(name, "found")])
        matched_f1 = per_class_f1(np.array(matched[name][0], object), np.array(matched[name][1], object))
        parts = ["forest", "cnn"] if name == "forest+cnn" else [name]
        cost = sum(classifiers.seconds[part] * 1000 / max(1, classifiers.nuclei[part]) for part in parts)
        result["classifiers"][name] = {
            "true_outlines": true_scores,
            "found_matched_f1": matched_f1,
            "found_end_to_end": found_scores,
            "cpu_seconds_per_1000_nuclei": round(cost, 3),
        }
        label = {"forest": classifiers.forest.name, "cnn": classifiers.cnn and classifiers.cnn.name}.get(
            name, "mean of the two's probabilities"
        )
        print(f"\n{label} ({cost:.2f} CPU-s per 1,000 nuclei, measurements/crops included):")
        print(f"  {'class':13s} {'true outlines':>22s} {'found, matched':>15s} {'found, end to end':>22s}")
        for c in CLASS_NAMES:
            t, f = true_scores[c], found_scores[c]
            print(
                f"  {c:13s} {t['f1']:8.3f} (HN {t['f1_hovernet']:.3f}) {matched_f1[c]:15.3f} {f['f1']:8.3f} (HN {f['f1_hovernet']:.3f})"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
