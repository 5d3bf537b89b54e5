"""A batch's yolo/: YOLO-seg over the batch's images (`BATCH_FORMAT`), label lines as a slide's (wsi_assets.cells.exports.yolo).

labels/<image stem>.txt for every image of the manifest (empty for an image without nuclei),
images/ holding copies of the batch's images (the bytes the manifest hashed; the inputs are only
read) and data.yaml with path, train, val and names, so the folder trains as it is. Each image's lines are written as its rows are read, so
memory stays that of one row group.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.exports.table import batch_class_names, class_index, outline_bounds, row_groups
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.exports.yolo import DATA, IMAGES, LABELS
from wsi_assets.core.atomic import atomic_output


def _batch_label_lines(group, sizes: dict[str, tuple[int, int]]) -> dict[str, list[str]]:
    """Each image's label lines for a row group, as wsi_assets.cells.exports.yolo.label_line writes them, normalised all at once:
    a format string per vertex count instead of a Python f-string per coordinate."""
    values, offsets, _ = outline_bounds(group)
    images = group.column("image").to_pylist()
    size = np.array([sizes[image] for image in images], np.float64).reshape(-1, 2)
    vertices = np.diff(offsets)
    normalised = (
        np.clip(values.astype(np.float64).reshape(-1, 2) / np.repeat(size, vertices, axis=0), 0.0, 1.0).reshape(-1).tolist()
    )
    classes = [class_index(c) for c in group.column(CLASS_COLUMN).to_pylist()]
    starts, counts = (2 * offsets[:-1]).tolist(), vertices.tolist()
    lines: dict[str, list[str]] = defaultdict(list)
    for n, image in enumerate(images):
        pattern = _LINE_PATTERNS.get(counts[n]) or _LINE_PATTERNS.setdefault(counts[n], "%d" + " %.6f" * (2 * counts[n]))
        lines[image].append(pattern % (classes[n], *normalised[starts[n] : starts[n] + 2 * counts[n]]))
    return lines


_LINE_PATTERNS: dict[int, str] = {}  # vertex count -> "%d %.6f %.6f ..." for one label line


def copy_if_unchanged(source: Path, target: Path, sha256: str) -> bool:
    """Copy `source` to `target` when it still holds the bytes the manifest hashed; `source` is only read.

    A copy, never a hard link: a link would give the upload a second name, which the next scan
    refuses (whose file it is cannot be told), and an edit of the input would reach the result.
    """
    data = Path(source).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        return False  # changed since it was segmented: its labels would not match these pixels
    Path(target).write_bytes(data)
    return True


def write_batch_yolo(cells_path: Path, manifest: BatchManifest, destination: Path, images_dir: Path | None = None) -> int:
    """The batch's yolo/ folder; returns the number of label lines (nuclei).

    images_dir: the folder holding the batch's images (its input folder); without it images/ stays empty.
    """
    sizes = {image.name: (image.width, image.height) for image in manifest.images}
    labelled: set[str] = set()
    lines_written = 0
    with atomic_output(Path(destination)) as folder:
        (folder / LABELS).mkdir(parents=True)
        (folder / IMAGES).mkdir()
        if images_dir is not None:
            for image in manifest.images:
                copy_if_unchanged(Path(images_dir) / image.name, folder / IMAGES / image.name, image.sha256)
        for group in row_groups(cells_path, manifest, ["polygon_coords", CLASS_COLUMN]):
            lines = _batch_label_lines(group, sizes)
            for image, image_lines in lines.items():
                # Appended: batch_cells keeps an image's rows together, but rows of an image that
                # come back in a later group must add to its file, not replace what it holds.
                with open(folder / LABELS / f"{Path(image).stem}.txt", "a") as label_file:
                    label_file.write("".join(line + "\n" for line in image_lines))
                lines_written += len(image_lines)
            labelled.update(lines)
        for image in manifest.images:
            if image.name not in labelled:
                (folder / LABELS / f"{Path(image.name).stem}.txt").write_text("")
        data = {
            "path": ".",
            "train": IMAGES,
            "val": IMAGES,
            "labels": LABELS,
            "names": dict(enumerate(batch_class_names(manifest))),
        }
        (folder / DATA).write_text(yaml.safe_dump(data, sort_keys=False))
    return lines_written


BATCH_FORMAT = BatchExportFormat(
    name="yolo",
    file_name="yolo",
    kinds=("yolo",),
    description="yolo/: YOLO-seg training set, images/ (links to the batch's images), labels/<image stem>.txt with one line per nucleus (class index, outline normalised to the image), and data.yaml (path, train, val, names).",
    write=write_batch_yolo,
    takes_images=True,
)
