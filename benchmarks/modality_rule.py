"""How often `modality: auto` picks the right model family on the shared image sets.

    python benchmarks/modality_rule.py [--json PATH]

Every H&E tile of ../shared/data/nuclei_train (must read bright-field) and every DSB fluorescence
field of ../shared/data/nuclei_fluo_train (given as RGB, must read fluorescence; a 2-D array is
fluorescence by rule, so RGB is the case the image rule decides). Prints the accuracy per set and
the files it gets wrong.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETS = {
    "brightfield": sorted((DATA / "nuclei_train").glob("*/images/*.png")),
    "fluorescence": sorted((DATA / "nuclei_fluo_train" / "dsb2018_fluorescence" / "images").glob("*.png")),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from wsi_assets.segmentation.modality import decide_modality

    results = {}
    for truth, paths in SETS.items():
        wrong = [
            str(p.relative_to(DATA))
            for p in paths
            if decide_modality(cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1])[0] != truth
        ]
        results[truth] = {
            "images": len(paths),
            "right": len(paths) - len(wrong),
            "accuracy": round(1 - len(wrong) / max(1, len(paths)), 4),
            "wrong": wrong,
        }
        print(f"{truth}: {len(paths) - len(wrong)}/{len(paths)} right", *wrong, sep="\n  ")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
