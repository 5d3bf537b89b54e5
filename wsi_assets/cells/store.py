"""The stored segmentation: one Parquet file of nuclei, written as tiles finish, read back in batches.

Exports are built from it without holding every polygon in memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.cells.table import NucleusTable
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, EMBEDDING_KEY

SCHEMA = pa.schema(
    [
        ("cell_id", pa.int64()),
        ("centroid_x", pa.float64()),
        ("centroid_y", pa.float64()),
        ("area_pixels", pa.float64()),
        ("polygon_point_count", pa.int32()),
        ("polygon_x", pa.list_(pa.float32())),
        ("polygon_y", pa.list_(pa.float32())),
        ("tile_row", pa.int32()),
        ("tile_col", pa.int32()),
    ]
)
ROW_GROUP_CELLS = 50_000


class CellStoreWriter:
    """Appends nuclei tile by tile; ids are 1..N in the order they are appended."""

    def __init__(
        self,
        path: Path,
        metadata: dict[str, str] | None = None,
        measurement_columns: tuple[str, ...] = (),
        embedding_width: int = 0,
    ):
        # Measurements (float32), then the embedding, go between the base columns and any later stage's (a class).
        fields = list(SCHEMA) + [pa.field(name, pa.float32()) for name in measurement_columns]
        if embedding_width:
            fields.append(pa.field(EMBEDDING_COLUMN, pa.list_(pa.float16(), embedding_width)))
        schema = pa.schema(fields).with_metadata({k: str(v) for k, v in (metadata or {}).items()})
        self._schema = schema
        self._measurement_columns = tuple(measurement_columns)
        self._embedding_width = embedding_width
        self._writer = pq.ParquetWriter(str(path), schema, compression="zstd")
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.cells_written = 0

    def append(self, nuclei: NucleusTable, tile_row: int, tile_col: int) -> None:
        count = len(nuclei)
        if count == 0:
            return
        ids = np.arange(self.cells_written + 1, self.cells_written + count + 1, dtype=np.int64)
        offsets = pa.array(nuclei.offsets.astype(np.int32))
        batch = pa.record_batch(
            [
                pa.array(ids),
                pa.array(nuclei.centroid_x),
                pa.array(nuclei.centroid_y),
                pa.array(nuclei.area_pixels),
                pa.array(nuclei.point_counts),
                pa.ListArray.from_arrays(offsets, pa.array(nuclei.vertices[:, 0])),
                pa.ListArray.from_arrays(offsets, pa.array(nuclei.vertices[:, 1])),
                pa.array(np.full(count, tile_row, np.int32)),
                pa.array(np.full(count, tile_col, np.int32)),
                *(pa.array(np.asarray(nuclei.columns[name], np.float32)) for name in self._measurement_columns),
                *([embedding_array(nuclei.columns[EMBEDDING_COLUMN])] if self._embedding_width else []),
            ],
            schema=self._schema,
        )
        self.cells_written += count
        self._pending.append(batch)
        self._pending_rows += count
        if self._pending_rows >= ROW_GROUP_CELLS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending), row_group_size=self._pending_rows)
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> "CellStoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def embedding_array(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    """(N, width) embeddings as the cell table's fixed-size list<float16> column."""
    embeddings = np.ascontiguousarray(embeddings, np.float16)
    return pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), embeddings.shape[1])


def embedding_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The (N, width) float16 embeddings of a stored embedding column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


class UnreadableCellTable(ValueError):
    """The stored cell table exists but cannot be read (damaged or not Parquet): not worth a retry."""


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except pa.ArrowException as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableCellTable(
            f"{path} cannot be read ({reason}): materialize 'cell_segmentation' for this slide again"
        ) from error


def count_cells(path: Path) -> int:
    with _reading(path):
        return pq.ParquetFile(str(path)).metadata.num_rows


def nuclei_from_batch(batch: pa.RecordBatch) -> tuple[np.ndarray, NucleusTable, np.ndarray]:
    polygon_x = batch.column("polygon_x")
    polygon_y = batch.column("polygon_y")
    offsets = polygon_x.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    vertices = np.stack(
        [polygon_x.flatten().to_numpy(zero_copy_only=False), polygon_y.flatten().to_numpy(zero_copy_only=False)], axis=1
    ).astype(np.float32)
    table = NucleusTable(
        batch.column("centroid_x").to_numpy(),
        batch.column("centroid_y").to_numpy(),
        batch.column("area_pixels").to_numpy(),
        offsets,
        vertices,
    )
    tiles = np.stack([batch.column("tile_row").to_numpy(), batch.column("tile_col").to_numpy()], axis=1)
    return batch.column("cell_id").to_numpy(), table, tiles


def iter_cells(path: Path, batch_cells: int = 50_000) -> Iterator[tuple[np.ndarray, NucleusTable, np.ndarray]]:
    """(cell_ids, nuclei, tile (row, col) per cell) in id order, a bounded batch at a time."""
    with _reading(path):
        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=batch_cells):
            yield nuclei_from_batch(batch)


def read_cells_where(path: Path, filters: list[tuple]) -> Iterator[tuple[np.ndarray, NucleusTable, np.ndarray]]:
    """Like iter_cells, for the cells matching pyarrow `filters` (row-group statistics skip the rest)."""
    with _reading(path):
        table = pq.read_table(str(path), filters=filters)
    for batch in table.to_batches():
        yield nuclei_from_batch(batch)


def read_cell_columns(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """Whole columns without the polygons (cheap even for millions of cells)."""
    with _reading(path):
        table = pq.read_table(str(path), columns=columns)
    return {name: table.column(name).to_numpy() for name in columns}


def iter_record_batches(path: Path, batch_cells: int = 50_000, with_embedding: bool = False) -> Iterator[pa.RecordBatch]:
    """The stored rows as Arrow record batches in id order, every column included but the
    embedding (which only classification reads: `with_embedding`).

    For exports that carry columns later stages add to the table (measurements, a class)
    without knowing them in advance; `extra_columns` names them.
    """
    with _reading(path):
        parquet = pq.ParquetFile(str(path))
        names = parquet.schema_arrow.names
        columns = None if with_embedding or EMBEDDING_COLUMN not in names else [n for n in names if n != EMBEDDING_COLUMN]
        for batch in parquet.iter_batches(batch_size=batch_cells, columns=columns):
            yield batch


def extra_columns(path: Path) -> list[pa.Field]:
    """The stored table's columns beyond the base SCHEMA that exports carry, in file order.

    The embedding stays out: 192 unnamed numbers a nucleus mean something only to a classifier.
    """
    with _reading(path):
        schema = pq.read_schema(str(path))
    return [field for field in schema if field.name not in SCHEMA.names and field.name != EMBEDDING_COLUMN]


def stored_embedding(path: Path) -> dict | None:
    """Which network's embedding the stored cells carry (embedding_identity), or None."""
    import json

    with _reading(path):
        schema = pq.read_schema(str(path))
    if EMBEDDING_COLUMN not in schema.names:
        return None
    text = (schema.metadata or {}).get(EMBEDDING_KEY.encode())
    return json.loads(text) if text else None
