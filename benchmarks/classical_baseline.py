"""Baseline scores of the classical segmenter on the annotated tiles of ../shared/data/nuclei_train.

Each image is segmented with `segment_image` at its own pixel size (so it is resampled to the
segmenter's 0.5 µm/px and back) and compared with its labels at native resolution. Pixel
sizes come from manifest.csv; where it says "unknown", the pixel size is estimated from the
labelled nuclei's median diameter (see `estimate_mpp`). Prints one table row per dataset.

    python benchmarks/classical_baseline.py [--data DIR] [--limit N] [--param name=value ...]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd

from wsi_assets.core.images import read_image_file_rgb
from wsi_assets.segmentation.classical import ClassicalParams, ClassicalSegmenter
from wsi_assets.segmentation.image import segment_image
from wsi_assets.segmentation.metrics import aggregated_jaccard_index, f1_at_iou, panoptic_quality
from wsi_assets.training.data import estimate_mpp, parse_mpp, read_labels

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train"


@dataclass
class ImageScore:
    dataset: str
    stem: str
    mpp: float
    mpp_estimated: bool
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    f1: float
    aji: float
    pq: float
    seconds: float


def score_image(row: pd.Series, root: Path, segmenter: ClassicalSegmenter) -> ImageScore:
    rgb, true = read_image_file_rgb(root / row["image"]), read_labels(root / row["label"])
    mpp = parse_mpp(row["microns_per_pixel"])
    estimated = mpp is None
    if estimated:
        mpp = estimate_mpp(true)
    start = time.perf_counter()
    pred = segment_image(rgb, mpp, segmenter)
    seconds = time.perf_counter() - start
    f1 = f1_at_iou(pred, true, 0.5)
    return ImageScore(
        dataset=row["dataset"],
        stem=Path(row["image"]).stem,
        mpp=mpp,
        mpp_estimated=estimated,
        n_true=int(true.max()),
        n_pred=int(pred.max()),
        tp=f1["tp"],
        fp=f1["fp"],
        fn=f1["fn"],
        f1=f1["f1"],
        aji=aggregated_jaccard_index(pred, true),
        pq=panoptic_quality(pred, true)["pq"],
        seconds=seconds,
    )


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: pooled detection F1 (all nuclei together), and per-image means of AJI and PQ."""

    def one(group: pd.DataFrame) -> pd.Series:
        tp, fp, fn = group["tp"].sum(), group["fp"].sum(), group["fn"].sum()
        return pd.Series(
            {
                "images": len(group),
                "true": group["n_true"].sum(),
                "pred": group["n_pred"].sum(),
                "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1),
                "F1@0.5": 2 * tp / max(2 * tp + fp + fn, 1),
                "mean F1": group["f1"].mean(),
                "AJI": group["aji"].mean(),
                "PQ": group["pq"].mean(),
                "mpp": f"{group['mpp'].min():.2f}-{group['mpp'].max():.2f}" + (" (est.)" if group["mpp_estimated"].any() else ""),
            }
        )

    table = scores.groupby("dataset")[list(scores.columns)].apply(one)
    table.loc["all"] = one(scores)
    table.loc["all", "mpp"] = ""
    return table


def parse_params(pairs: list[str]) -> ClassicalParams:
    known = {f.name for f in fields(ClassicalParams)}
    updates = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known:
            raise SystemExit(f"unknown parameter {name!r}; known: {sorted(known)}")
        updates[name] = float(value)
    return replace(ClassicalParams(), **updates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0, help="images per dataset (0 = all)")
    parser.add_argument("--param", action="append", default=[], help="ClassicalParams override name=value")
    parser.add_argument("--per-image", action="store_true", help="also print every image's scores")
    args = parser.parse_args()

    if not (args.data / "manifest.csv").exists():
        raise SystemExit(f"no manifest.csv under {args.data}")
    manifest = pd.read_csv(args.data / "manifest.csv")
    if args.limit:
        manifest = manifest.groupby("dataset").head(args.limit)
    segmenter = ClassicalSegmenter(parse_params(args.param))
    scores = pd.DataFrame([vars(score_image(row, args.data, segmenter)) for _, row in manifest.iterrows()])
    pd.set_option("display.width", 200)
    if args.per_image:
        print(scores.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"segmenter: {segmenter.name} v{segmenter.version} at {segmenter.mpp} µm/px")
    print(summarise(scores).to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"segment_image time: {scores['seconds'].sum():.1f} s for {len(scores)} images")


if __name__ == "__main__":
    main()
