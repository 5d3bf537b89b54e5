"""Weight-free nucleus segmentation for H&E: hematoxylin density, threshold, watershed.

Pipeline per tile (all sizes are in µm and converted with the segmenter's µm/px):
1. hematoxylin optical density by colour deconvolution (Ruifrok & Johnston matrix, as
   `skimage.color.rgb2hed`), lightly smoothed;
2. foreground = density above a per-tile threshold: Otsu over the tissue pixels, clamped
   between an absolute floor and ceiling, and above the local background;
3. small holes filled, specks removed;
4. touching nuclei split by a watershed on the distance transform, seeded by its h-maxima;
5. instances outside the plausible nucleus area range, or too ragged to be a nucleus, dropped.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import hed_from_rgb
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from wsi_assets.core.optical_density import optical_density
from wsi_assets.segmentation.protocol import check_tile_batch

# Optical density of each 8-bit intensity, log10(256 / (I + 1)): +1 keeps log finite for black pixels.
# (Equal, value for value, to the -log10((I + 1) / 256) this table was first built with.)
_OD_LUT = optical_density(np.arange(256), offset=1.0, dtype=np.float64).astype(np.float32)
# Per-channel contribution to hematoxylin density: OD_r*h_r + OD_g*h_g + OD_b*h_b.
_HEMATOXYLIN_LUTS = [(_OD_LUT * np.float32(w)).astype(np.float32) for w in hed_from_rgb[:, 0]]
_OTSU_BINS = np.linspace(0.0, 3.0, 301, dtype=np.float32)
_SQUARE3 = np.ones((3, 3), np.uint8)
_ALGORITHM_VERSION = "1"


@dataclass(frozen=True)
class ClassicalParams:
    """Tuning of the classical segmenter; lengths in µm, areas in µm², densities in OD units."""

    smooth_sigma_um: float = 0.5
    tissue_min_od: float = 0.2  # summed RGB optical density below this is glass
    max_red_green_od: float = 1.25  # hematoxylin absorbs green at least as much as red;
    # green/blue marking ink and dust absorb mostly red (ratio 1.5-2) and pass as hematoxylin
    density_floor: float = 0.1  # hematoxylin OD never counted as nucleus below this
    density_ceiling: float = 0.7  # an Otsu threshold above this is clamped down to it
    background_radius_um: float = 8.0  # larger than a nucleus: what stays after an opening
    min_local_contrast: float = 0.1  # nucleus must be this much denser than its background
    max_hole_um2: float = 30.0
    marker_h_um: float = 0.15  # a distance peak must rise this far above its saddle to seed
    min_area_um2: float = 8.0
    max_area_um2: float = 500.0
    min_solidity: float = 0.85  # area / convex hull area; folds and debris are ragged


class ClassicalSegmenter:
    """Colour-deconvolution + watershed nucleus segmenter; CPU, deterministic, no weights."""

    name = "classical-hed-watershed"
    device = "cpu"

    def __init__(self, params: ClassicalParams | None = None, mpp: float = 0.5, threads: int | None = None) -> None:
        if not mpp > 0:
            raise ValueError(f"mpp must be positive, got {mpp}")
        self.params = params or ClassicalParams()
        self.mpp = float(mpp)
        # OpenCV and the watershed release the GIL, so tiles of a batch segment in parallel threads.
        self.threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None

    @property
    def version(self) -> str:
        """ "1" with the default parameters; other parameters add a short digest of them, so
        results recorded with a version can be traced to the exact settings."""
        if self.params == ClassicalParams():
            return _ALGORITHM_VERSION
        digest = hashlib.sha256(repr(self.params).encode()).hexdigest()[:8]
        return f"{_ALGORITHM_VERSION}+{digest}"

    def __repr__(self) -> str:
        return f"ClassicalSegmenter(mpp={self.mpp}, params={self.params})"

    def segment_batch(self, tiles: np.ndarray) -> np.ndarray:
        tiles = check_tile_batch(tiles)
        out = np.zeros(tiles.shape[:3], dtype=np.int32)
        if self.threads == 1 or len(tiles) == 1:
            for i, tile in enumerate(tiles):
                out[i] = self.segment_tile(tile)
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="classical")
        for i, labels in enumerate(self._pool.map(self.segment_tile, tiles)):
            out[i] = labels
        return out

    def segment_tile(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H,W,3) RGB at `self.mpp` -> int32 (H,W) labels 0..n."""
        p, px = self.params, self.mpp
        density, tissue, ink = stain_maps(rgb, p.tissue_min_od, p.max_red_green_od)
        density = cv2.GaussianBlur(density, (0, 0), p.smooth_sigma_um / px)
        threshold = nucleus_threshold(density[tissue & ~ink], p.density_floor, p.density_ceiling)
        mask = (density > threshold) & ~ink
        mask &= local_contrast(density, p.background_radius_um / px) > p.min_local_contrast
        mask = clean_mask(mask, p.max_hole_um2 / px**2)
        max_extent_px = 2 * math.sqrt(p.max_area_um2 / math.pi) / px
        labels = split_touching(mask, p.marker_h_um / px, p.smooth_sigma_um / px, max_extent_px)
        return filter_instances(labels, p.min_area_um2 / px**2, p.max_area_um2 / px**2, p.min_solidity)


def stain_maps(rgb: np.ndarray, tissue_min_od: float, max_red_green_od: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hematoxylin optical density (float32), tissue mask (summed OD above glass) and ink mask."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    density = _HEMATOXYLIN_LUTS[0][r] + _HEMATOXYLIN_LUTS[1][g] + _HEMATOXYLIN_LUTS[2][b]
    od_red, od_green = _OD_LUT[r], _OD_LUT[g]
    tissue = (od_red + od_green + _OD_LUT[b]) > tissue_min_od
    ink = od_red > max_red_green_od * od_green + 0.05  # the offset ignores near-white noise
    return density, tissue, ink


def nucleus_threshold(tissue_density: np.ndarray, floor: float, ceiling: float) -> float:
    """Otsu split of the tissue's hematoxylin density, clamped to [floor, ceiling].

    The floor keeps glass and eosin-only stroma (whose Otsu split is noise) free of nuclei; the
    ceiling keeps a nucleus-packed tile (whose Otsu split falls between dark and pale nuclei)
    from losing its paler half.
    """
    if tissue_density.size < 64:
        return floor
    counts, _ = np.histogram(tissue_density, bins=_OTSU_BINS)
    if np.count_nonzero(counts) < 2:
        return floor
    centers = (_OTSU_BINS[:-1] + _OTSU_BINS[1:]) / 2
    otsu = threshold_otsu(hist=(counts, centers))
    return float(min(max(otsu, floor), ceiling))


def local_contrast(density: np.ndarray, radius_px: float) -> np.ndarray:
    """Density minus its opening by a disk wider than a nucleus (a white top-hat).

    Uniformly dark regions wider than the disk (folds, thick purple bands) are flattened;
    nuclei are narrower and stay. The opening runs on a 4x-reduced image: it only needs the
    background's coarse shape, and a large disk at full resolution costs ~20x more.
    """
    h, w = density.shape
    factor = 4 if min(h, w) >= 64 else 1
    small = cv2.resize(density, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    size = 2 * max(1, round(radius_px / factor)) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    background = cv2.morphologyEx(small, cv2.MORPH_OPEN, disk)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    return density - background


def clean_mask(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    """Fill holes up to `max_hole_px` (pale chromatin) and drop one-pixel specks and spurs."""
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _SQUARE3)
    n, holes, stats, _ = cv2.connectedComponentsWithStats(1 - mask, connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] <= max_hole_px
    h, w = mask.shape
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right = left + stats[:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
    # A background region touching the tile edge may continue outside: not a hole.
    inner = (left > 0) & (top > 0) & (right < w) & (bottom < h)
    fill = small & inner
    fill[0] = False  # label 0 of the inverted mask is the foreground itself
    if n > 1 and fill.any():
        mask[fill[holes]] = 1
    return mask


def split_touching(mask: np.ndarray, marker_h_px: float, smooth_px: float, max_extent_px: float) -> np.ndarray:
    """Instance labels: watershed of the distance transform seeded by its h-maxima."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    distance = cv2.GaussianBlur(distance, (0, 0), smooth_px)
    # Geodesic propagation needs about one iteration per pixel of the widest nucleus; blobs
    # wider than that are dropped by the area filter, so converging on them is wasted time.
    markers = h_maxima_markers(distance, marker_h_px, int(math.ceil(max_extent_px)) + 8)
    return watershed(-distance, markers, mask=mask.astype(bool)).astype(np.int32, copy=False)


def h_maxima_markers(image: np.ndarray, h: float, max_iter: int) -> np.ndarray:
    """int32 markers, one per h-maximum of a float32 image (peaks rising more than `h`
    above the saddle joining them to a higher peak), by iterated geodesic reconstruction.

    Each marker is a whole plateau of the reconstruction, not only the pixels equal to the
    peak: on a smoothed distance map an elongated nucleus often has two near-equal tops a
    pixel apart, and seeding each would cut the nucleus in two.
    """
    reconstructed = image - np.float32(h)
    for i in range(max_iter):
        grown = cv2.min(cv2.dilate(reconstructed, _SQUARE3), image)
        if i % 8 == 7 and np.array_equal(grown, reconstructed):
            break
        reconstructed = grown
    tops = (image - reconstructed) >= np.float32(h) - 1e-4
    plateaus = ((reconstructed >= cv2.dilate(reconstructed, _SQUARE3)) & (image > 0)) | tops
    count, regions = cv2.connectedComponents(plateaus.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    # a plateau without a top is a shelf below a saddle, not a peak of its own
    seeded = np.zeros(count, bool)
    seeded[regions[tops]] = True
    seeded[0] = False
    new_ids = np.cumsum(seeded, dtype=np.int32) * seeded
    return new_ids[regions]


def filter_instances(labels: np.ndarray, min_px: float, max_px: float, min_solidity: float) -> np.ndarray:
    """Keep instances of plausible area and solidity, renumbered 1..n in label order."""
    areas = np.bincount(labels.ravel())
    keep = (areas >= min_px) & (areas <= max_px)
    keep[0] = False
    if min_solidity > 0 and keep.any():
        keep &= instance_solidity(labels, areas, keep) >= min_solidity
    new_ids = np.cumsum(keep, dtype=np.int32) * keep
    return new_ids.astype(np.int32)[labels]


def instance_solidity(labels: np.ndarray, areas: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Pixel count over lattice points inside the convex hull, for labels where `which` is
    True (others, and index 0, get 1).

    Counting lattice points (Pick's theorem: area + boundary points / 2 + 1) rather than
    taking the hull's area makes a digital disc or ellipse of any size score 1, where the
    plain area ratio would penalise small nuclei.
    """
    solidity = np.ones(areas.size)
    as_float = labels.astype(np.float32)  # exact for ids below 2**24
    edge = (cv2.erode(as_float, _SQUARE3, borderType=cv2.BORDER_CONSTANT, borderValue=0) != as_float) | (
        cv2.dilate(as_float, _SQUARE3, borderType=cv2.BORDER_CONSTANT, borderValue=0) != as_float
    )
    ys, xs = np.nonzero(edge & (labels > 0))
    ids = labels[ys, xs]
    order = np.argsort(ids, kind="stable")
    ids, points = ids[order], np.stack([xs[order], ys[order]], axis=1).astype(np.int32)
    bounds = np.searchsorted(ids, np.arange(areas.size + 1))
    for label in np.flatnonzero(which & (np.diff(bounds) >= 3)):
        hull = cv2.convexHull(points[bounds[label] : bounds[label + 1]])[:, 0, :]
        steps = np.abs(hull - np.roll(hull, 1, axis=0))
        lattice_points = cv2.contourArea(hull) + np.gcd(steps[:, 0], steps[:, 1]).sum() / 2 + 1
        solidity[label] = areas[label] / lattice_points
    return solidity
