"""PCA over channels (features) with voxels as samples, from a covariance accumulated one chunk at a time.

The covariance of C channels is a C×C matrix, so the whole stack never needs to be in memory:
each block adds its sum and cross-products (about a per-channel reference value, which keeps the
float64 sums from cancelling). Its eigen-decomposition gives what scikit-learn's PCA gives on
all voxels at once: explained variance (ddof 1) and its ratio, and the components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr

from wsi_assets.stacks.blocks import zyx_blocks
from wsi_assets.stacks.errors import StackReadError

PCA_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ChannelPca:
    n_voxels: int
    mean: np.ndarray  # (C,)
    covariance: np.ndarray  # (C, C), ddof 1
    explained_variance: np.ndarray  # (n_components,)
    explained_variance_ratio: np.ndarray
    components: np.ndarray  # (n_components, C), rows are unit vectors

    def to_json(self, channel_names: tuple[str, ...]) -> dict:
        return {
            "n_voxels": self.n_voxels,
            "channels": list(channel_names),
            "mean": self.mean.tolist(),
            "covariance": self.covariance.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "components": self.components.tolist(),
        }


def streamed_covariance(level0: zarr.Array) -> tuple[int, np.ndarray, np.ndarray]:
    """(voxel count, channel means, channel covariance with ddof 1), one (all channels × one chunk) block at a time."""
    t_size, c_size = level0.shape[:2]
    reference = np.asarray(level0[0, :, 0, 0, 0], dtype=np.float64)
    n, sums, products = 0, np.zeros(c_size), np.zeros((c_size, c_size))
    _, _, _, y_chunk, x_chunk = level0.chunks
    # All channels of a chunk as float64 grow with C: take fewer Z planes at once when there are many.
    z_step = max(1, PCA_BLOCK_BYTES // (c_size * y_chunk * x_chunk * 8))
    for t in range(t_size):
        for zs, ys, xs in zyx_blocks(level0):
            for z0 in range(zs.start, zs.stop, z_step):
                block = level0[t, :, z0 : min(zs.stop, z0 + z_step), ys, xs]
                voxels = np.asarray(block, dtype=np.float64).reshape(c_size, -1) - reference[:, None]
                n += voxels.shape[1]
                sums += voxels.sum(axis=1)
                products += voxels @ voxels.T
    if n < 2:
        raise StackReadError("a PCA needs at least two voxels")
    shifted_mean = sums / n
    covariance = (products - n * np.outer(shifted_mean, shifted_mean)) / (n - 1)
    return n, shifted_mean + reference, covariance


def channel_pca(level0: zarr.Array, n_components: int | None = None) -> ChannelPca:
    """PCA of the stack's channels; `n_components` defaults to every channel."""
    c_size = level0.shape[1]
    if c_size < 2:
        raise StackReadError(f"a PCA over channels needs at least two channels; this stack has {c_size}")
    n_components = c_size if n_components is None else n_components
    if not 1 <= n_components <= c_size:
        raise StackReadError(f"n_components={n_components} is out of range: this stack has {c_size} channels (use 1 to {c_size})")
    n, mean, covariance = streamed_covariance(level0)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0, None), eigenvectors[:, order]
    # scikit-learn's sign convention (svd_flip on the components): the largest |loading| is positive.
    signs = np.sign(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), range(c_size)])
    eigenvectors = eigenvectors * np.where(signs == 0, 1, signs)
    total = eigenvalues.sum()
    ratio = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)
    return ChannelPca(n, mean, covariance, eigenvalues[:n_components], ratio[:n_components], eigenvectors[:, :n_components].T)


def component_images(pca: ChannelPca, planes: np.ndarray) -> np.ndarray:
    """The slice's voxels projected on the components: (C, Y, X) channel planes in, (n_components, Y, X) float32 out."""
    c_size, height, width = planes.shape
    centred = planes.reshape(c_size, -1).astype(np.float64) - pca.mean[:, None]
    return (pca.components @ centred).reshape(-1, height, width).astype(np.float32)
