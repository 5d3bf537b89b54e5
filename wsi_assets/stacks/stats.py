"""Per-channel statistics, per channel and per channel and time point, in one streaming pass over the OME-Zarr copy.

For 8- and 16-bit integer stacks every figure is exact: a histogram of all values per (t, c)
gives the mean, the (population) standard deviation, the extremes and numpy's linearly
interpolated percentiles. For other dtypes mean, std, min and max are exact (merged moments) and
the percentiles come from an evenly strided sample of at most PERCENTILE_SAMPLE voxels per row,
taken in the same pass and flagged `percentiles_exact: false`. Memory is one storage chunk plus
that sample, whatever the stack's T, Z or plane size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr

from wsi_assets.stacks.blocks import zyx_blocks

PERCENTILES = (1.0, 5.0, 50.0, 95.0, 99.0)
ALL_TIMES = "all"
PERCENTILE_SAMPLE = 2**22  # voxels kept per row for the percentiles of a float stack: 16 MB of float32


@dataclass
class _Moments:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = np.inf
    maximum: float = -np.inf

    def add(self, values: np.ndarray) -> None:
        values = values.astype(np.float64, copy=False).ravel()
        n = values.size
        if not n:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def merge(self, other: _Moments) -> None:
        if not other.count:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.minimum, self.maximum = min(self.minimum, other.minimum), max(self.maximum, other.maximum)


def histogram_offset(dtype: np.dtype) -> int | None:
    """The offset that maps the dtype's values onto 0.., or None when a full histogram does not fit."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        return -int(np.iinfo(dtype).min)
    return None


def percentiles_from_histogram(histogram: np.ndarray, offset: int, qs=PERCENTILES) -> list[float]:
    """numpy's default (linear) percentiles of the values the histogram counts."""
    cumulative = np.cumsum(histogram)
    n = int(cumulative[-1])
    found = []
    for q in qs:
        position = q / 100 * (n - 1)
        low, high = int(np.floor(position)), int(np.ceil(position))
        value_low = int(np.searchsorted(cumulative, low, side="right")) - offset
        value_high = int(np.searchsorted(cumulative, high, side="right")) - offset
        found.append(value_low + (value_high - value_low) * (position - low))
    return found


def summary_from_histogram(histogram: np.ndarray, offset: int) -> dict:
    values = np.arange(histogram.size, dtype=np.float64) - offset
    present = np.nonzero(histogram)[0]
    n = int(histogram.sum())
    mean = float((values * histogram).sum() / n)
    variance = float((histogram * (values - mean) ** 2).sum() / n)
    row = {"count": n, "mean": mean, "std": variance**0.5, "min": float(present[0] - offset), "max": float(present[-1] - offset)}
    row.update({f"p{q:g}": v for q, v in zip(PERCENTILES, percentiles_from_histogram(histogram, offset))})
    return row


def _moments_row(moments: _Moments, sample: np.ndarray) -> dict:
    row = {
        "count": moments.count,
        "mean": moments.mean,
        "std": (moments.m2 / moments.count) ** 0.5,
        "min": moments.minimum,
        "max": moments.maximum,
    }
    row.update({f"p{q:g}": float(v) for q, v in zip(PERCENTILES, np.percentile(sample, PERCENTILES))})
    return row


def _moments_and_sample(level0: zarr.Array, t: int, c: int) -> tuple[_Moments, np.ndarray]:
    """Exact moments of the (t, c) volume and every `step`-th of its voxels (in storage order), one chunk at a time."""
    volume = int(np.prod(level0.shape[2:], dtype=np.int64))
    step = max(1, -(-volume // PERCENTILE_SAMPLE))
    moments, parts, skip = _Moments(), [], 0
    for zs, ys, xs in zyx_blocks(level0):
        values = np.asarray(level0[t, c, zs, ys, xs]).ravel()
        moments.add(values)
        parts.append(values[skip::step].copy())  # a copy: a view would keep the whole chunk alive
        skip = (skip - values.size) % step
    return moments, np.concatenate(parts)


def channel_stats(level0: zarr.Array, channel_names: tuple[str, ...]) -> dict:
    """Rows of statistics: one per channel over all time points (t = "all"), then one per (channel, t)."""
    t_size, c_size = level0.shape[:2]
    offset = histogram_offset(level0.dtype)
    exact = offset is not None
    rows_all, rows_t = [], []
    for c in range(c_size):
        total_hist = np.zeros(2 ** (8 * level0.dtype.itemsize), np.int64) if exact else None
        total_moments, total_sample = _Moments(), []
        for t in range(t_size):
            if exact:
                hist = np.zeros_like(total_hist)
                for zs, ys, xs in zyx_blocks(level0):
                    block = level0[t, c, zs, ys, xs].ravel()
                    hist += np.bincount(block.astype(np.int32) + offset if offset else block, minlength=hist.size)
                total_hist += hist
                row = summary_from_histogram(hist, offset)
            else:
                moments, sample = _moments_and_sample(level0, t, c)
                total_moments.merge(moments)
                total_sample.append(sample[t::t_size])  # each time point's share of one sample's size
                row = _moments_row(moments, sample)
            rows_t.append({"channel": channel_names[c], "c": c, "t": t, **row})
        if exact:
            row = summary_from_histogram(total_hist, offset)
        else:
            row = _moments_row(total_moments, np.concatenate(total_sample))
        rows_all.append({"channel": channel_names[c], "c": c, "t": ALL_TIMES, **row})
    return {"percentiles": list(PERCENTILES), "percentiles_exact": exact, "rows": rows_all + rows_t}


def shown_rows(stats: dict, max_rows: int = 60) -> tuple[list[str], list[dict]]:
    """The columns and first rows the UI shows, numbers to 4 significant digits; channel_stats.csv holds every row."""
    columns = ["channel", "t", "mean", "std", "min", "max", *(f"p{q:g}" for q in stats["percentiles"])]
    rows = [{k: _shown(row[k]) for k in columns} for row in stats["rows"][:max_rows]]
    return columns, rows


def _shown(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.4g}")
    return str(value)
