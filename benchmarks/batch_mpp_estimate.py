"""How close a batch's nucleus-size µm/px estimate comes to the truth, on crops of CMU-1 and synthetic fields.

    python benchmarks/batch_mpp_estimate.py [--slide PATH] [--json out.json]

Fields, as a user cuts them and drops them as a batch (issue 30):
- CMU-1-Small-Region (../shared, 0.499 µm/px, skipped where absent) read with OpenSlide at level 0
  in a grid of 256², 512² and 1024² fields (1024² overlapping by half), those at least a quarter
  tissue;
- synthetic H&E fields (the package's generator) of 256² and 512² at 0.25, 0.5 and 1.0 µm/px,
  centred on tissue.
Each set prints every field's own estimate (`estimate_mpp_from_image`) with its relative error,
the median of those errors, and the batch's one value, made as `process_batch` makes it (the
blobs of up to 24 evenly spread fields pooled; code without `estimate_mpp_from_fields` takes the
median of the per-field estimates, as before issue 30). To measure another checkout's estimator,
put its root first on PYTHONPATH (e.g. `git archive HEAD | tar -x -C /tmp/old`, then
`PYTHONPATH=/tmp/old python benchmarks/batch_mpp_estimate.py`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from wsi_assets.slides import mpp_estimate

REPO = Path(__file__).resolve().parents[1]

CMU = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
SAMPLE = 24  # the images a batch's estimate decodes (batches/manifest.py ESTIMATE_SAMPLE)


def cmu_fields(path: Path, side: int) -> list[tuple[str, np.ndarray]]:
    import cv2
    import openslide

    slide = openslide.OpenSlide(str(path))
    width, height = slide.dimensions
    step = side // 2 if side >= 1024 else side
    fields = []
    for y in range(0, height - side + 1, step):
        for x in range(0, width - side + 1, step):
            rgb = np.asarray(slide.read_region((x, y), 0, (side, side)).convert("RGB"))
            if (cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1] > 20).mean() >= 0.25:
                fields.append((f"x{x}_y{y}", rgb))
    return fields


def synthetic_fields(mpp: float, side: int, count: int = 8, seed: int = 3) -> list[tuple[str, np.ndarray]]:
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, render_region, synthetic_tissue_mask

    extent = int(1500 / mpp)  # a 1.5 mm square of tissue and glass
    spec = SyntheticSlideSpec(width=extent, height=extent, mpp=mpp, seed=seed)
    step = 16
    rows, cols = np.nonzero(synthetic_tissue_mask(spec, step))
    fields = []
    for i in np.random.default_rng(0).choice(len(rows), count, replace=False):
        x = int(min(max(0, cols[i] * step - side // 2), extent - side))
        y = int(min(max(0, rows[i] * step - side // 2), extent - side))
        fields.append((f"x{x}_y{y}", render_region(spec, 1, x, y, side, side)))
    return fields


def batch_estimate(rgbs: list[np.ndarray]) -> float | None:
    """The batch's one value as process_batch makes it from up to SAMPLE evenly spread images."""
    sample = [rgbs[round(i * (len(rgbs) - 1) / (SAMPLE - 1))] for i in range(SAMPLE)] if len(rgbs) > SAMPLE else rgbs
    if hasattr(mpp_estimate, "estimate_mpp_from_fields"):
        estimate = mpp_estimate.estimate_mpp_from_fields([mpp_estimate.nucleus_sizes(rgb) for rgb in sample])
        return estimate.mpp if estimate else None
    found = [e.mpp for e in map(mpp_estimate.estimate_mpp_from_image, sample) if e]
    return float(np.median(found)) if found else None


def measure(name: str, fields: list[tuple[str, np.ndarray]], true_mpp: float) -> dict:
    started = time.perf_counter()
    per_field = {}
    for label, rgb in fields:
        estimate = mpp_estimate.estimate_mpp_from_image(rgb)
        per_field[label] = round(estimate.mpp, 4) if estimate else None
    batch = batch_estimate([rgb for _, rgb in fields])
    errors = [v / true_mpp - 1 for v in per_field.values() if v]
    result = {
        "set": name,
        "true_mpp": true_mpp,
        "fields": len(fields),
        "estimated_fields": len(errors),
        "median_error": round(float(np.median(errors)), 4) if errors else None,
        "error_range": [round(min(errors), 3), round(max(errors), 3)] if errors else None,
        "batch_mpp": round(batch, 4) if batch else None,
        "batch_error": round(batch / true_mpp - 1, 4) if batch else None,
        "seconds": round(time.perf_counter() - started, 1),
        "per_field": per_field,
    }
    shown = " ".join(f"{label}:{v if v is not None else '-'}" for label, v in per_field.items())
    print(f"{name}: {shown}")
    median = f"{result['median_error']:+.1%}" if errors else "-"
    spread = f"[{min(errors):+.0%}, {max(errors):+.0%}]" if errors else ""
    batch_text = f"{batch:.3f} ({result['batch_error']:+.1%})" if batch else "none"
    print(
        f"  => {len(errors)}/{len(fields)} fields estimated, median error {median} {spread}; batch {batch_text} vs {true_mpp}\n",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=CMU)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    if args.slide.exists():
        import openslide

        true_mpp = float(openslide.OpenSlide(str(args.slide)).properties["openslide.mpp-x"])
        for side in (256, 512, 1024):
            results.append(measure(f"CMU-1 {side}²", cmu_fields(args.slide, side), true_mpp))
    else:
        print(f"{args.slide} not found: CMU-1 crops skipped\n")
    for mpp in (0.25, 0.5, 1.0):
        for side in (256, 512):
            results.append(measure(f"synthetic {mpp} µm/px {side}²", synthetic_fields(mpp, side), mpp))
    print(f"{'set':28s} {'fields':>7s} {'median error':>13s} {'batch µm/px':>12s} {'batch error':>12s}")
    for r in results:
        median = f"{r['median_error']:+.1%}" if r["median_error"] is not None else "-"
        batch, error = (f"{r['batch_mpp']:.3f}", f"{r['batch_error']:+.1%}") if r["batch_mpp"] else ("-", "-")
        print(f"{r['set']:28s} {r['estimated_fields']:>3d}/{r['fields']:<3d} {median:>13s} {batch:>12s} {error:>12s}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
