"""How a TIFF stack's planes are stored (tiles or strips, compressed or not), and whether a region of a plane can be read alone.

A reader decodes whole tiles or strips. A region of a tiled plane costs the tiles it touches; a
region of a stripped plane costs the strips across its rows. Uncompressed strips are read row by
row straight from the file, whatever their size (ImageJ and many writers store a plane as one
uncompressed strip). A compressed tile or strip must be decoded whole, so one larger than a read
may hold is refused before anything is read.
"""

from __future__ import annotations

import numpy as np
import tifffile

# The most one decoded tile or strip may hold: as much as one block of a streaming pass.
MAX_STORED_CHUNK_BYTES = 128 * 2**20


def stored_chunk_bytes(keyframe: tifffile.TiffPage) -> int:
    """Bytes of one decoded tile or strip of the page."""
    return int(np.prod(keyframe.chunks, dtype=np.int64)) * keyframe.dtype.itemsize


def rows_readable_raw(keyframe: tifffile.TiffPage) -> bool:
    """True when any rows of the page can be read from the file as they are: uncompressed strips of whole samples."""
    return (
        keyframe.compression == 1
        and not keyframe.is_tiled
        and keyframe.fillorder == 1
        and keyframe.predictor == 1
        and keyframe.samplesperpixel == 1
        and keyframe.sampleformat != 5
        and keyframe.dtype is not None
        and keyframe.bitspersample == keyframe.dtype.itemsize * 8
    )


def storage_problem(keyframe: tifffile.TiffPage, name: str, limit: int | None = None) -> str | None:
    """A one-line refusal when a region of the planes cannot be read without decoding more than `limit` bytes at once."""
    limit = MAX_STORED_CHUNK_BYTES if limit is None else limit
    size = stored_chunk_bytes(keyframe)
    if size <= limit or rows_readable_raw(keyframe):
        return None
    kind = "tiles" if keyframe.is_tiled else "strips"
    height, width = keyframe.chunks[-2:] if keyframe.samplesperpixel == 1 else keyframe.chunks[-3:-1]
    return (
        f"{name}: its planes are stored in compressed {kind} of {width}×{height} px ({size / 2**20:,.1f} MiB each once decoded), "
        f"more than the {limit / 2**20:,.1f} MiB one read may hold; save it tiled (e.g. 512×512 tiles: "
        "bfconvert -tilex 512 -tiley 512, or tifffile's tile=(512, 512)) or uncompressed"
    )
