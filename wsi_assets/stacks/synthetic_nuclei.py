"""Synthetic stacks of moving nuclei with known identities: for the nuclei tests, the tracking score and benchmarks.

Nuclei are ellipsoids (radius about `radius_um`, flatter in Z) that keep their distance from each
other and take a random step of about `step_um` per time point. Channel 0 (DAPI) is bright inside
each nucleus, lightly blurred, over a dark noisy background; channel 1 (GFP) is a per-nucleus
constant inside it, so a nucleus's true mean is known. `truth_labels(spec, t)` gives the true
(Z, Y, X) labels, ids = nucleus index + 1 at every time point (the true track), and
`truth_table(spec)` the true centroids. Planes are drawn one at a time, so any size can be written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

BACKGROUND = (100.0, 50.0)
DAPI_LEVEL = 1200.0


@dataclass(frozen=True)
class NucleiStackSpec:
    t: int = 3
    z: int = 12
    y: int = 256
    x: int = 256
    n_nuclei: int = 24
    radius_um: float = 4.0
    step_um: float = 1.5  # standard deviation of each X and Y step per time point
    xy_um: float = 0.5
    z_um: float = 1.0
    noise: float = 20.0
    seed: int = 0
    time_step_s: float = 60.0
    channel_names: tuple[str, ...] = ("DAPI", "GFP")

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.t, len(self.channel_names), self.z, self.y, self.x)

    @cached_property
    def nuclei(self) -> dict[str, np.ndarray]:
        """Radii (N, 3: x, y, z µm), GFP level (N,) and centres (T, N, 3: x, y, z µm) of every nucleus."""
        rng = np.random.default_rng(self.seed)
        radii = self.radius_um * rng.uniform(0.85, 1.15, (self.n_nuclei, 1)) * np.array([1.0, 0.85, 0.8])
        radii[:, 1] *= rng.uniform(0.85, 1.15, self.n_nuclei)
        size = np.array([self.x * self.xy_um, self.y * self.xy_um, self.z * self.z_um])
        low, high = radii + 1.0, size - radii - 1.0
        if np.any(high <= low):
            raise ValueError(f"a {self.z}×{self.y}×{self.x} volume cannot hold nuclei of radius {self.radius_um} µm")
        spacing = 2.3 * self.radius_um
        centres = np.zeros((self.t, self.n_nuclei, 3))
        for n in range(self.n_nuclei):
            for _ in range(1000):
                point = rng.uniform(low[n], high[n])
                if n == 0 or np.min(np.linalg.norm((centres[0, :n] - point)[:, :2], axis=1)) >= spacing:
                    break
            else:
                raise ValueError(f"{self.n_nuclei} nuclei of radius {self.radius_um} µm do not fit a {self.y}×{self.x} px plane")
            centres[0, n] = point
        for t in range(1, self.t):
            centres[t] = centres[t - 1]
            for n in rng.permutation(self.n_nuclei):
                for _ in range(20):  # a step that would crowd a neighbour is drawn again; else the nucleus stays
                    point = centres[t, n] + np.array([*rng.normal(0, self.step_um, 2), 0.0])
                    others = np.delete(centres[t], n, axis=0)
                    if (
                        np.all(point >= low[n])
                        and np.all(point <= high[n])
                        and np.min(np.linalg.norm((others - point)[:, :2], axis=1), initial=np.inf) >= spacing
                    ):
                        centres[t, n] = point
                        break
        gfp = rng.uniform(200, 2000, self.n_nuclei)
        return {"radii": radii, "gfp": gfp, "centres": centres}


def truth_plane(spec: NucleiStackSpec, t: int, z: int) -> np.ndarray:
    """int32 (Y, X) true labels of plane z at time t (nucleus index + 1)."""
    out = np.zeros((spec.y, spec.x), np.int32)
    radii, centres = spec.nuclei["radii"], spec.nuclei["centres"][t]
    zc = (z + 0.5) * spec.z_um
    for n in range(spec.n_nuclei):
        rx, ry, rz = radii[n]
        cx, cy, cz = centres[n]
        left = 1 - ((zc - cz) / rz) ** 2
        if left <= 0:
            continue
        ax, ay = rx * np.sqrt(left) / spec.xy_um, ry * np.sqrt(left) / spec.xy_um
        px, py = cx / spec.xy_um, cy / spec.xy_um
        x0, x1 = max(0, int(px - ax)), min(spec.x, int(px + ax) + 2)
        y0, y1 = max(0, int(py - ay)), min(spec.y, int(py + ay) + 2)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = ((xx + 0.5 - px) / ax) ** 2 + ((yy + 0.5 - py) / ay) ** 2 <= 1
        out[y0:y1, x0:x1][inside] = n + 1
    return out


def truth_labels(spec: NucleiStackSpec, t: int) -> np.ndarray:
    return np.stack([truth_plane(spec, t, z) for z in range(spec.z)])


def _noise(spec: NucleiStackSpec, t: int, c: int, z: int) -> np.ndarray:
    # A random 128² tile repeated with a random shift: noise without Y×X random draws per plane.
    rng = np.random.default_rng((spec.seed, t, c, z))
    tile = rng.normal(0, spec.noise, (128, 128)).astype(np.float32)
    reps = (-(-spec.y // 128) + 1, -(-spec.x // 128) + 1)
    dy, dx = rng.integers(0, 128, 2)
    return np.tile(tile, reps)[dy : dy + spec.y, dx : dx + spec.x]


def channel_planes(spec: NucleiStackSpec, t: int, z: int) -> list[np.ndarray]:
    """uint16 (Y, X) planes of every channel at (t, z)."""
    truth = truth_plane(spec, t, z)
    inside = truth > 0
    dapi = np.full(truth.shape, BACKGROUND[0], np.float32)
    dapi[inside] = DAPI_LEVEL
    dapi = cv2.GaussianBlur(dapi, (0, 0), 1.0)
    gfp = np.full(truth.shape, BACKGROUND[1], np.float32)
    gfp[inside] += spec.nuclei["gfp"][truth[inside] - 1].astype(np.float32)
    planes = []
    for c, values in enumerate([dapi, gfp][: len(spec.channel_names)]):
        planes.append(np.clip(np.rint(values + _noise(spec, t, c, z)), 0, 65535).astype(np.uint16))
    return planes


def _planes_tzc(spec: NucleiStackSpec) -> Iterator[np.ndarray]:
    for t in range(spec.t):
        for z in range(spec.z):
            yield from channel_planes(spec, t, z)


def write_nuclei_stack(path: Path, spec: NucleiStackSpec) -> Path:
    """An OME-TIFF (BigTIFF, TZCYX) of the spec, with physical sizes, time step and channel names."""
    if len(spec.channel_names) not in (1, 2):
        raise ValueError("a synthetic nuclei stack has one or two channels (DAPI, and GFP)")
    tifffile.imwrite(
        str(path),
        data=_planes_tzc(spec),
        shape=(spec.t, spec.z, len(spec.channel_names), spec.y, spec.x),
        dtype=np.uint16,
        bigtiff=True,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "TZCYX",
            "PhysicalSizeX": spec.xy_um,
            "PhysicalSizeY": spec.xy_um,
            "PhysicalSizeZ": spec.z_um,
            "TimeIncrement": spec.time_step_s,
            "Channel": {"Name": list(spec.channel_names)},
        },
    )
    return Path(path)


def truth_table(spec: NucleiStackSpec) -> pd.DataFrame:
    """One row per nucleus per time point: t, nucleus (its true track), centroid_x/y/z in voxels, GFP level."""
    centres = spec.nuclei["centres"]
    rows = []
    for t in range(spec.t):
        for n in range(spec.n_nuclei):
            x, y, z = centres[t, n]
            rows.append((t, n + 1, x / spec.xy_um - 0.5, y / spec.xy_um - 0.5, z / spec.z_um - 0.5, spec.nuclei["gfp"][n]))
    return pd.DataFrame(rows, columns=["t", "nucleus", "centroid_x", "centroid_y", "centroid_z", "gfp"])
