"""Reading exports back whole, the way a user's script would, for the tests."""

from __future__ import annotations

from pathlib import Path

import zarr


def read_cells_zarr_zip(zip_path: Path) -> dict:
    """Everything in a cells.zarr.zip, in memory (for tests and small slides)."""
    store = zarr.storage.ZipStore(str(zip_path), mode="r")
    try:
        root = zarr.open_group(store=store, mode="r")
        data = {
            name: root[name][:]
            for name in ("cell_ids", "centroids", "area_pixels", "polygon_point_counts", "polygon_offsets", "polygon_vertices")
        }
        data["attrs"] = dict(root.attrs)
    finally:
        store.close()
    return data
