"""A batch's manifest: every image with its size, dimensions and µm/px, what changed since the last result, and the rejected files.

An image is unchanged when the previous published manifest holds the same name with the same
size and mtime, or with the same content hash (a copy that only touched the mtime); only new and
changed images are segmented again. The hash recorded is that of the very bytes decoded, and every
later read of the image checks it, so an image that changes during its run is dropped from that
run's result with its reason (`without_changed`): a manifest describes the bytes segmented.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from wsi_assets.batches.images import (
    BatchImageRejected,
    decode_batch_image,
    name_reason,
    read_batch_image,
    read_image_bytes,
    size_reason,
)
from wsi_assets.core.confinement import (
    HardLinkedUpload,
    PathOutsideUserFolder,
    confined_upload,
)
from wsi_assets.segmentation.modality import BRIGHTFIELD, FLUORESCENCE, decide_modality
from wsi_assets.slides.mpp_estimate import NucleusSizes, estimate_mpp_from_fields, nucleus_sizes

MANIFEST_FILE = "manifest.json"
NEW, CHANGED, UNCHANGED = "new", "changed", "unchanged"
METADATA, BRANCH, ESTIMATE, DEFAULT = "file metadata", "branch.yaml", "nucleus-size estimate", "default"


@dataclass(frozen=True)
class ManifestImage:
    name: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    mpp: float
    mpp_source: str
    mpp_inferred: bool
    change: str  # NEW, CHANGED or UNCHANGED since the last published result
    # Manifests written before fluorescence support hold bright-field images only.
    modality: str = BRIGHTFIELD  # brightfield | fluorescence: the model family that segments it
    modality_source: str = "given"  # "given", "model card" or "auto: ..." (segmentation/modality.py)


@dataclass(frozen=True)
class BatchManifest:
    batch: str
    images: list[ManifestImage]
    rejected: list[tuple[str, str]]  # (file name, why)

    @property
    def to_segment(self) -> list[ManifestImage]:
        return [i for i in self.images if i.change != UNCHANGED]

    def as_dict(self) -> dict:
        return {
            "batch": self.batch,
            "images": [asdict(i) for i in self.images],
            "rejected": [{"file": name, "why": why} for name, why in self.rejected],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BatchManifest:
        return cls(data["batch"], [ManifestImage(**i) for i in data["images"]], [(r["file"], r["why"]) for r in data["rejected"]])


def without_changed(manifest: BatchManifest, changed: list[tuple[str, str]]) -> BatchManifest:
    """The manifest with the images that changed during the run moved to its rejected files, with why."""
    if not changed:
        return manifest
    names = {name for name, _ in changed}
    kept = [i for i in manifest.images if i.name not in names]
    return BatchManifest(manifest.batch, kept, sorted([*manifest.rejected, *changed]))


def load_manifest(path: Path) -> BatchManifest | None:
    try:
        return BatchManifest.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no usable previous result: every image is new


ESTIMATE_SAMPLE = 24  # images decoded again to estimate a batch's µm/px: more only repeats the median


def stated_mpp(metadata_mpp: float | None, branch_mpp: float | None) -> tuple[float | None, str]:
    """(µm/px, its source) when the file or branch.yaml states it; (None, ESTIMATE) when the batch's estimate must decide."""
    if metadata_mpp:
        return round(metadata_mpp, 6), METADATA
    if branch_mpp:
        return float(branch_mpp), BRANCH
    return None, ESTIMATE


def evenly_spaced(items: list, count: int) -> list:
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def one_estimate_per_batch(
    images: list[ManifestImage], measure: Callable[[ManifestImage], NucleusSizes | None], default_mpp: float, workers: int = 0
) -> list[ManifestImage]:
    """Images without a stated µm/px share one value: the batch's.

    A batch comes from one microscope, and one field's nuclei depend on its tissue (spindly stroma
    reads small, crowded epithelium large); the nuclei of up to ESTIMATE_SAMPLE images spread over
    the batch, pooled into one size distribution, give the better estimate (a median of per-image
    estimates read CMU-1 crops 14-22% high: issue 30). One shared value also gives same-sized
    images the same shape at the model's µm/px, which the network runs much faster (compiled
    once). It is made at the batch's first run (measuring all 10,000 images would cost minutes
    and change nothing). Images added later take the value the batch already has (their
    unchanged neighbours carry it), so an addition never re-runs them. When the sample shows too
    few nuclei, the default µm/px is used and flagged as such.
    """

    def pooled(sample: list[ManifestImage], pool: ThreadPoolExecutor) -> float | None:
        estimate = estimate_mpp_from_fields([sizes for sizes in pool.map(measure, sample) if sizes is not None])
        return estimate.mpp if estimate is not None else None

    return _one_value_per_batch(images, pooled, default_mpp, workers)


def _one_value_per_batch(
    images: list[ManifestImage],
    estimate: Callable[[list[ManifestImage], ThreadPoolExecutor], float | None],
    default_mpp: float,
    workers: int,
) -> list[ManifestImage]:
    """The images to estimate get the value their unchanged neighbours carry, else `estimate` of an
    evenly spread sample of them (None: the default, flagged)."""
    fresh = [i for i in images if i.mpp_source == ESTIMATE and i.change != UNCHANGED]
    if not fresh:
        return images
    kept = [i.mpp for i in images if i.mpp_source == ESTIMATE and i.change == UNCHANGED]
    if kept:
        batch_mpp, source = kept[0], ESTIMATE
    else:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            found = estimate(evenly_spaced(fresh, ESTIMATE_SAMPLE), pool)
        batch_mpp, source = (round(found, 4), ESTIMATE) if found is not None else (float(default_mpp), DEFAULT)
    chosen = {i.name for i in fresh}
    return [replace(i, mpp=batch_mpp, mpp_source=source) if i.name in chosen else i for i in images]


def _measure_image_nuclei(folder: Path, root: Path, user: str, name: str, sha256: str) -> NucleusSizes | None:
    try:
        return nucleus_sizes(read_batch_image(confined_upload(folder / name, root, user), sha256).rgb)
    except (BatchImageRejected, PathOutsideUserFolder, HardLinkedUpload, OSError):
        return None  # changed since it was looked at: the other sampled images decide


def one_fluorescence_estimate_per_batch(
    images: list[ManifestImage], estimate: Callable[[ManifestImage], float | None], default_mpp: float, workers: int = 0
) -> list[ManifestImage]:
    """`one_estimate_per_batch` for fluorescence images: the median of the fluorescence estimates
    (`segmentation.fluorescence.estimate_fluorescence_mpp`) of up to ESTIMATE_SAMPLE images."""

    def median(sample: list[ManifestImage], pool: ThreadPoolExecutor) -> float | None:
        found = [mpp for mpp in pool.map(estimate, sample) if mpp]
        return float(np.median(found)) if found else None

    return _one_value_per_batch(images, median, default_mpp, workers)


def _fluorescence_mpp(folder: Path, root: Path, user: str, name: str, sha256: str) -> float | None:
    from wsi_assets.segmentation.fluorescence import estimate_fluorescence_mpp

    try:
        return estimate_fluorescence_mpp(read_batch_image(confined_upload(folder / name, root, user), sha256).channel)
    except (BatchImageRejected, PathOutsideUserFolder, HardLinkedUpload, OSError):
        return None  # changed since it was looked at: the other sampled images decide


def _look(
    folder: Path,
    root: Path,
    user: str,
    name: str,
    previous: dict[str, ManifestImage],
    branch_mpp,
    default_mpp,
    modality: str = "auto",
):
    """One entry as a ManifestImage, or (name, why) when it is rejected.

    `modality` auto is decided per image; an image segmented before under another modality
    than the one now given is segmented again."""
    reason = name_reason(name)
    if reason:
        return name, reason
    path = folder / name
    try:
        real = confined_upload(path, root, user)
        st = os.stat(real)
    except (PathOutsideUserFolder, HardLinkedUpload) as error:
        return name, str(error).splitlines()[0]
    except OSError as error:
        return name, f"cannot be read ({error.strerror}); fix its permissions"
    if not stat.S_ISREG(st.st_mode):
        return name, "not a regular file; remove it"
    reason = size_reason(st.st_size)
    if reason:
        return name, reason
    before = previous.get(name)
    if before is not None and modality != "auto" and before.modality != modality:
        before = None  # segmented as the other modality: a new image for this setting
    if before is not None and (before.size, before.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return ManifestImage(**{**asdict(before), "change": UNCHANGED})
    # One read: the hash compared and recorded is that of the very bytes decoded below.
    try:
        data = read_image_bytes(real)
    except BatchImageRejected as error:
        return name, str(error)
    except OSError as error:
        return name, f"cannot be read ({error.strerror}); fix its permissions"
    if len(data) != st.st_size:
        return name, "changed while it was being read; it is looked at again in the batch's next run, once it holds still"
    sha = hashlib.sha256(data).hexdigest()
    if before is not None and before.sha256 == sha:
        return ManifestImage(**{**asdict(before), "mtime_ns": st.st_mtime_ns, "change": UNCHANGED})
    try:
        image = decode_batch_image(data, real, sha)
    except BatchImageRejected as error:
        return name, str(error)
    mpp, source = stated_mpp(image.metadata_mpp, branch_mpp)
    height, width = image.rgb.shape[:2]
    change = NEW if name not in previous else CHANGED
    chosen, chosen_source = decide_modality(image.gray if image.gray is not None else image.rgb, modality)
    # Unstated µm/px is filled in by one_estimate_per_batch; default_mpp holds the place until then.
    return ManifestImage(
        name,
        st.st_size,
        st.st_mtime_ns,
        sha,
        width,
        height,
        mpp or default_mpp,
        source,
        mpp is None,
        change,
        chosen,
        chosen_source,
    )


def images_with_distinct_stems(images: list[ManifestImage]) -> tuple[list[ManifestImage], list[tuple[str, str]]]:
    """The images, but of names that differ only by extension (x.png, x.tif) the first alone, and the others rejected.

    Exports name per-image files by the stem (YOLO's labels/x.txt beside images/x.png), so two
    such images would share one label file, and YOLO tooling could not tell them apart.
    """
    first: dict[str, str] = {}
    kept, rejected = [], []
    for image in sorted(images, key=lambda i: i.name):
        stem = Path(image.name).stem
        if stem in first:
            rejected.append(
                (
                    image.name,
                    f"has the same name as {first[stem]} but for its extension, and exports name files by it; rename one",
                )
            )
        else:
            first[stem] = image.name
            kept.append(image)
    return kept, rejected


def build_manifest(
    folder: Path,
    root: Path,
    key,
    previous: BatchManifest | None,
    branch_mpp: float | None,
    default_mpp: float,
    workers: int = 0,
    modality: str = "auto",
) -> BatchManifest:
    """Look at every entry of the batch folder (in parallel: decoding releases the GIL); the input files are only read.

    `modality` (auto | brightfield | fluorescence) is each image's model family; auto decides per image."""
    folder = Path(folder)
    try:
        with os.scandir(folder) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it if not e.name.startswith("."))
    except OSError as error:
        raise BatchImageRejected(f"{key}: the batch folder cannot be listed ({error.strerror})") from None
    rejected = [
        (name + "/", "folders inside a batch are not read; put the images directly in the batch folder")
        for name, is_dir in entries
        if is_dir
    ]
    names = [name for name, is_dir in entries if not is_dir]
    before = {i.name: i for i in previous.images} if previous else {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        looks = list(pool.map(lambda n: _look(folder, Path(root), key.user, n, before, branch_mpp, default_mpp, modality), names))
    images, same_stem = images_with_distinct_stems([look for look in looks if isinstance(look, ManifestImage)])
    rejected += same_stem
    # Fluorescence nuclei are measured otherwise and differ in size: their images share a value of their own.
    order = {i.name: n for n, i in enumerate(images)}
    bright = one_estimate_per_batch(
        [i for i in images if i.modality != FLUORESCENCE],
        lambda i: _measure_image_nuclei(folder, Path(root), key.user, i.name, i.sha256),
        default_mpp,
        workers,
    )
    fluorescent = one_fluorescence_estimate_per_batch(
        [i for i in images if i.modality == FLUORESCENCE],
        lambda i: _fluorescence_mpp(folder, Path(root), key.user, i.name, i.sha256),
        default_mpp,
        workers,
    )
    images = sorted(bright + fluorescent, key=lambda i: order[i.name])
    rejected += [look for look in looks if not isinstance(look, ManifestImage)]
    return BatchManifest(key.partition_key, images, sorted(rejected))
