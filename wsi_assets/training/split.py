"""The held-out split of ../shared/data/nuclei_train: what the shipped model never trained on.

Held out by source, never by random tile:
- MoNuSeg (40x TCGA, 0.25 µm/px): both **bladder** and both **colon** images (organs the model
  never sees), plus one whole source image each of breast, kidney, lung and prostate;
- NuCLS: CellViT++'s 5 "test" fields of view;
- CoNSeP (colorectal, 40x, not TCGA): 5 of its 27 training tiles, whole: every crop of tiles
  train_5, train_10, train_15, train_20 and train_25 (crops of one tile overlap, so a tile is
  never split);
- DSB 2018: tiles whose stem hashes (SHA-1) to 0 mod 5, about a fifth. DSB does not say which
  tiles are crops of the same source image, so leakage between DSB tiles cannot be ruled out;
  the DSB figures are the least trustworthy of the three.
"""

from __future__ import annotations

import hashlib

HELD_OUT_MONUSEG = (
    # bladder (whole organ)
    "TCGA-DK-A2I6-01A-01-TS1",
    "TCGA-G2-A2EK-01A-02-TSB",
    # colon (whole organ)
    "TCGA-AY-A8YK-01A-01-TS1",
    "TCGA-NH-A8F7-01A-01-TS1",
    # one source image per organ that is also trained on
    "TCGA-A7-A13E-01Z-00-DX1",  # breast
    "TCGA-B0-5710-01Z-00-DX1",  # kidney
    "TCGA-21-5784-01Z-00-DX1",  # lung
    "TCGA-G9-6362-01Z-00-DX1",  # prostate
)
HELD_OUT_NUCLS = tuple(f"nucls_test_{i}" for i in range(1, 6))
HELD_OUT_CONSEP_TILES = ("train_5", "train_10", "train_15", "train_20", "train_25")
DSB_HOLDOUT_MODULUS = 5


def consep_tile(stem: str) -> str:
    """CoNSeP crop stem `train_<tile>_<crop>` -> its tile `train_<tile>`."""
    return stem.rsplit("_", 1)[0]


def is_held_out(dataset: str, stem: str) -> bool:
    """True for the validation images; everything else in nuclei_train is for training."""
    if dataset.startswith("monuseg"):
        return stem in HELD_OUT_MONUSEG
    if dataset.startswith("nucls"):
        return stem in HELD_OUT_NUCLS
    if dataset.startswith("consep"):
        return consep_tile(stem) in HELD_OUT_CONSEP_TILES
    if dataset.startswith("dsb"):
        return int(hashlib.sha1(stem.encode()).hexdigest(), 16) % DSB_HOLDOUT_MODULUS == 0
    return False


def describe() -> dict:
    """The split as it goes into the model card."""
    return {
        "rule": "by source: whole MoNuSeg organs/images, CellViT++ NuCLS test FOVs, whole CoNSeP tiles, DSB stems with sha1 % 5 == 0",
        "monuseg_held_out": list(HELD_OUT_MONUSEG),
        "nucls_held_out": list(HELD_OUT_NUCLS),
        "consep_held_out_tiles": list(HELD_OUT_CONSEP_TILES),
        "dsb_held_out_rule": f"int(sha1(stem), 16) % {DSB_HOLDOUT_MODULUS} == 0",
    }
