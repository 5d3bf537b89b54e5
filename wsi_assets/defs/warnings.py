"""Dagster's preview warnings for the features this project chose on purpose, silenced in one place.

Each entry names a feature and why we use it; any other preview or beta warning still shows.
"""

from __future__ import annotations

import warnings

CHOSEN_PREVIEW_FEATURES = {
    # Quality checks run per slide partition, beside the partitioned segmentation they check.
    "partitioned asset checks": r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
}


def silence_chosen_preview_warnings() -> None:
    from dagster import PreviewWarning

    for message in CHOSEN_PREVIEW_FEATURES.values():
        warnings.filterwarnings("ignore", message=message, category=PreviewWarning)
