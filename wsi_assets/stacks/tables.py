"""The stack's computed results as files users open: JSON for programs, CSV for spreadsheets, PNG for eyes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from wsi_assets.core.atomic import atomic_output, write_bytes_atomic, write_text_atomic
from wsi_assets.core.images import encode_png
from wsi_assets.stacks.previews import preview_file_name, stretch


def write_json(path: Path, data: dict) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=1))


def write_stats_csv(path: Path, rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_png_folder(folder: Path, images: dict[str, np.ndarray]) -> dict[str, Path]:
    """Each image as <title>.png in `folder`, which appears whole at once."""
    written = {}
    with atomic_output(folder) as temporary:
        temporary.mkdir()
        for title, image in images.items():
            name = preview_file_name(title)
            write_bytes_atomic(temporary / name, encode_png(image))
            written[title] = folder / name
    return written


def write_component_images(folder: Path, components: np.ndarray) -> dict[str, Path]:
    """components.npy (float32, n × Y × X) and one stretched PNG per component, in `folder` at once."""
    written = {}
    with atomic_output(folder) as temporary:
        temporary.mkdir()
        np.save(temporary / "components.npy", components)
        for i, image in enumerate(components):
            write_bytes_atomic(temporary / f"PC{i + 1}.png", encode_png(stretch(image)))
            written[f"PC{i + 1}"] = folder / f"PC{i + 1}.png"
    return written
