"""One image of a batch: whether it can be used (and why not), its pixels, and the µm/px its file states.

An image is read once into memory, hashed, and decoded from those very bytes, so the hash a
manifest records is the hash of the pixels segmented; a reader that expects a hash refuses other bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image, UnidentifiedImageError

from wsi_assets.core.branch_settings import is_plausible_mpp
from wsi_assets.core.keys import name_problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_IMAGE_BYTES = 200 * 1024 * 1024
MAX_IMAGE_PIXELS = 8192 * 8192  # a larger image is a slide: upload it directly in the branch folder
# A plain image's DPI is often a placeholder (72, 96, 300 written by any editor): only a resolution
# a microscope camera gives (a few µm/px or finer) is trusted, and only with a real unit.
MAX_METADATA_MPP = 5.0
DEEP_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class BatchImageRejected(ValueError):
    """An entry of a batch folder that cannot be segmented; the message is the one-line reason."""


class BatchImageChanged(BatchImageRejected):
    """The file's bytes are no longer those its batch's manifest describes: it changed during the run."""


CHANGED_DURING_RUN = "changed while its batch was being processed; it is segmented in the batch's next run"
REMOVED_DURING_RUN = "was removed while its batch was being processed, so it is not in this result"


@dataclass(frozen=True)
class BatchImage:
    rgb: np.ndarray
    metadata_mpp: float | None  # from the file's own resolution tags, when plausible
    sha256: str = ""  # of the bytes `rgb` was decoded from
    # A single-channel file of more than 8 bits (16-bit or float fluorescence), at its full depth;
    # `rgb` is then that channel scaled to 0..255 by its 1st..99.8th percentiles.
    gray: np.ndarray | None = None

    @property
    def channel(self) -> np.ndarray:
        """One channel for a fluorescence model: the deep gray channel, else the mean of RGB."""
        return self.gray if self.gray is not None else self.rgb.mean(axis=2, dtype=np.float32)


def name_reason(name: str) -> str | None:
    """Why a file name in a batch folder cannot be an image of the batch, from its name alone."""
    problem = name_problem(Path(name).stem, "image")
    if problem:
        return problem + "; rename the file"
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image of a batch (the extension is not one of {', '.join(IMAGE_SUFFIXES)})"
    return None


def size_reason(size: int) -> str | None:
    if size > MAX_IMAGE_BYTES:
        return f"too large for a batch image ({size / 2**20:.0f} MiB > {MAX_IMAGE_BYTES // 2**20} MiB); upload it as a slide in the branch folder"
    if size == 0:
        return "empty file (0 bytes); upload it again"
    return None


def _mpp_from_resolution(x_resolution, unit_cm: bool) -> float | None:
    try:
        per_unit = float(x_resolution)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(per_unit) or per_unit <= 0:
        return None
    mpp = (1e4 if unit_cm else 25400.0) / per_unit
    return mpp if is_plausible_mpp(mpp) and mpp <= MAX_METADATA_MPP else None


def _metadata_mpp(image: Image.Image) -> float | None:
    if image.format == "TIFF":
        tags = image.tag_v2
        unit = tags.get(296, 2)  # ResolutionUnit: 1 none, 2 inch, 3 cm
        if unit in (2, 3) and 282 in tags:
            return _mpp_from_resolution(tags[282], unit == 3)
        return None
    if image.format == "PNG" and "dpi" in image.info:
        # Pillow reports pHYs in metres as dpi; a pHYs without the metre unit gives no dpi.
        return _mpp_from_resolution(image.info["dpi"][0], False)
    if image.format == "JPEG" and image.info.get("jfif_unit") in (1, 2) and "jfif_density" in image.info:
        return _mpp_from_resolution(image.info["jfif_density"][0], image.info["jfif_unit"] == 2)
    return None


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes (at most MAX_IMAGE_BYTES); OSError when it cannot be read."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise BatchImageRejected(size_reason(len(data)))
    return data


def read_batch_image(path: Path, expected_sha256: str | None = None) -> BatchImage:
    """The image as RGB uint8 with its metadata µm/px and the hash of the bytes decoded; BatchImageRejected with a
    one-line reason otherwise, BatchImageChanged when `expected_sha256` is given and the file now holds other bytes."""
    path = Path(path)
    try:
        data = read_image_bytes(path)
    except FileNotFoundError:
        if expected_sha256 is not None:
            raise BatchImageChanged(REMOVED_DURING_RUN) from None
        raise BatchImageRejected("was removed before it could be read") from None
    except OSError as error:
        raise BatchImageRejected(f"cannot be read ({error.strerror or type(error).__name__}); upload it again") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise BatchImageChanged(CHANGED_DURING_RUN)
    return decode_batch_image(data, path, sha256)


def decode_batch_image(data: bytes, path: Path, sha256: str | None = None) -> BatchImage:
    """The image `data` holds (the bytes of the file at `path`, hashed `sha256`), as RGB uint8 with its metadata µm/px;
    BatchImageRejected otherwise."""
    path = Path(path)
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except openslide.OpenSlideError:
            vendor = None
        if vendor is not None:
            raise BatchImageRejected(f"a whole-slide image ({vendor}): upload it directly in the branch folder, not in a batch")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BatchImageRejected(
                    f"too large for a batch image ({image.width}x{image.height} px > {MAX_IMAGE_PIXELS:,} px); upload it as a slide"
                )
            mpp = _metadata_mpp(image)
            gray = np.asarray(image) if image.mode in DEEP_GRAY_MODES else None
            # Pillow clips a deep channel to 0..255 when converting it: scaled first instead.
            rgb = np.asarray(image.convert("RGB")) if gray is None else _scaled_rgb(gray)
    except BatchImageRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BatchImageRejected(f"cannot be read as an image ({text}); upload it again or save it as PNG") from None
    return BatchImage(rgb, mpp, sha256, gray)


def _scaled_rgb(gray: np.ndarray) -> np.ndarray:
    """A deep single channel as RGB uint8, its 1st..99.8th percentiles at 0..255."""
    channel = gray.astype(np.float32)
    low, high = np.percentile(channel[:: max(1, channel.shape[0] // 512), :: max(1, channel.shape[1] // 512)], [1.0, 99.8])
    scaled = np.clip((channel - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    return np.repeat(scaled[:, :, np.newaxis], 3, axis=2)
