"""The colours of annotated nuclei, behind the colour gate's margins (segmentation/colour_gate.py).

    python benchmarks/colour_gate.py [--data ../shared/data/nuclei_train]

Per dataset of nuclei_train (every image, not only the held-out split): how far a nucleus's mean
green exceeds its mean red (ink and debris: 20-50 levels), and how many nuclei are as pale as glass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from wsi_assets.segmentation.colour_gate import GLASS_MIN_LEVEL, GREEN_OVER_RED_MAX
from wsi_assets.training.evaluate import labelled_images

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nuclei_train")
    args = parser.parse_args()
    by_dataset: dict[str, list[np.ndarray]] = {}
    for item in labelled_images(args.data, held_out_only=False):
        count = int(item.labels.max())
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        present = ndimage.sum(np.ones(item.labels.shape), item.labels, index) > 0
        means = np.stack([ndimage.mean(item.rgb[..., c].astype(float), item.labels, index) for c in range(3)], 1)
        by_dataset.setdefault(item.dataset, []).append(means[present])
    print(
        f"| dataset | nuclei | G − R median / 99.9th pct / max | G − R > {GREEN_OVER_RED_MAX:g} | all channels > {GLASS_MIN_LEVEL:g} |"
    )
    print("| --- | --- | --- | --- | --- |")
    for dataset, parts in sorted(by_dataset.items()):
        means = np.concatenate(parts)
        excess = means[:, 1] - means[:, 0]
        median, high, top = np.percentile(excess, [50, 99.9, 100])
        print(
            f"| {dataset} | {len(means):,} | {median:.1f} / {high:.1f} / {top:.1f} | "
            f"{int((excess > GREEN_OVER_RED_MAX).sum())} | {int((means.min(1) > GLASS_MIN_LEVEL).sum())} |"
        )


if __name__ == "__main__":
    main()
