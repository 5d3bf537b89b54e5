"""Each channel's display window (OME-Zarr `omero.channels[].window`), gathered from the values as the copy writes them.

`start`/`end` are the channel's 1st and 99th percentiles over all time points, as `channel_stats`
computes them for its t = "all" rows: the same numbers when a channel has at most WINDOW_SAMPLE
voxels, else those of an evenly strided sample of WINDOW_SAMPLE voxels (a display window needs
no more precision). `min`/`max` are the dtype's range for integers and the measured range for floats.

Why while writing, not from channel_stats: the copy then appears with its final metadata in one
step, and the later channel_stats asset never rewrites a file of the copy (run sets share files
by hard link). The sample bounds the cost: a full histogram of every voxel added about a third
to the copy's time on the 2-core dev VM; the sample adds a few percent at most.
"""

from __future__ import annotations

import numpy as np

from wsi_assets.stacks.stats import histogram_offset, percentiles_from_histogram

WINDOW_PERCENTILES = (1.0, 99.0)
WINDOW_SAMPLE = 2**22  # voxels per channel: a histogram of them for 8- and 16-bit stacks, else 32 MiB of float64 at most


class DisplayWindows:
    """Feed every level-0 block of each channel to `add`, in write order, then read `windows()`."""

    def __init__(self, dtype, channels: int, voxels_per_channel: int):
        self.dtype = np.dtype(dtype)
        self.offset = histogram_offset(self.dtype)
        self.step = max(1, -(-voxels_per_channel // WINDOW_SAMPLE))
        self.skip = [0] * channels
        self.low = np.full(channels, np.inf)
        self.high = np.full(channels, -np.inf)
        if self.offset is not None:
            self.histograms = np.zeros((channels, 2 ** (8 * self.dtype.itemsize)), np.int64)
        else:
            self.samples: list[list[np.ndarray]] = [[] for _ in range(channels)]

    def add(self, c: int, block: np.ndarray) -> None:
        values = np.asarray(block).ravel()
        sample = values[self.skip[c] :: self.step]
        self.skip[c] = (self.skip[c] - values.size) % self.step
        if self.offset is not None:
            shifted = sample.astype(np.int32) + self.offset if self.offset else sample
            self.histograms[c] += np.bincount(shifted, minlength=self.histograms.shape[1])
            return
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size:
            self.low[c] = min(self.low[c], float(finite.min()))
            self.high[c] = max(self.high[c], float(finite.max()))
        self.samples[c].append(sample.astype(np.float64))

    def windows(self) -> list[dict]:
        """Per channel {"start", "end", "min", "max"}, with start < end."""
        if self.offset is not None:
            info = np.iinfo(self.dtype)
            return [
                _widened(
                    *percentiles_from_histogram(histogram, self.offset, WINDOW_PERCENTILES), float(info.min), float(info.max)
                )
                for histogram in self.histograms
            ]
        found = []
        for c, parts in enumerate(self.samples):
            sample = np.concatenate(parts) if parts else np.empty(0)
            sample = sample[np.isfinite(sample)]
            start, end = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES)) if sample.size else (0.0, 1.0)
            if self.dtype.kind in "iu":
                low, high = float(np.iinfo(self.dtype).min), float(np.iinfo(self.dtype).max)
            else:
                low, high = (float(self.low[c]), float(self.high[c])) if np.isfinite(self.low[c]) else (start, end)
            found.append(_widened(start, end, low, high))
        return found


def _widened(start: float, end: float, low: float, high: float) -> dict:
    """The window, one unit wide at least (viewers refuse an empty contrast range), within [min, max]."""
    start, end = float(start), float(end)
    if end <= start:
        start, end = (start, start + 1.0) if start + 1.0 <= high else (high - 1.0, high)
    return {"start": start, "end": end, "min": min(low, start), "max": max(high, end)}
