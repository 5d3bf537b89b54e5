"""Which slide file a result set was made from, so a slide replaced during its run is caught.

The upload sensor waits for a file to be stable before it queues a run, but nothing stops a user
from replacing the file while the run reads it. Cells found in one file and a size read from
another would publish nuclei outside the slide's recorded bounds, so each run records the file's
identity when it starts, checks it again after each read, and once more before publishing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from wsi_assets.core.confinement import shown_under_root
from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.slides.errors import SlideReadError

# Enough of the file's head (TIFF header and directory) and tail to tell two uploads apart
# without reading a multi-gigabyte slide a second time.
FINGERPRINT_BYTES = 1 << 20


class SlideChangedDuringRun(SlideReadError):
    """The slide file was replaced or modified while its run was reading it."""


@dataclass(frozen=True)
class SlideIdentity:
    path: str
    size: int
    mtime_ns: int
    inode: int
    fingerprint: str


def slide_identity(path: Path) -> SlideIdentity:
    """The file's size, mtime, inode and a hash of its first and last MiB."""
    path = Path(path)
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        digest = hashlib.sha256(handle.read(FINGERPRINT_BYTES))
        if stat.st_size > FINGERPRINT_BYTES:
            handle.seek(max(FINGERPRINT_BYTES, stat.st_size - FINGERPRINT_BYTES))
            digest.update(handle.read(FINGERPRINT_BYTES))
    return SlideIdentity(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, digest.hexdigest())


def save_identity(outputs: SlideOutputs, identity: SlideIdentity) -> None:
    write_text_atomic(outputs.slide_file_json, json.dumps(asdict(identity), indent=2))


def load_identity(outputs: SlideOutputs) -> SlideIdentity | None:
    """The recorded identity, or None for a set made before identities were recorded."""
    if not outputs.slide_file_json.exists():
        return None
    return SlideIdentity(**json.loads(outputs.slide_file_json.read_text()))


def ensure_unchanged(recorded: SlideIdentity | None, path: Path, root: Path) -> None:
    """SlideChangedDuringRun unless `path` is still the very file `recorded` describes."""
    if recorded is None:
        return
    try:
        current = slide_identity(path)
    except FileNotFoundError:
        current = None
    if current != recorded:
        raise SlideChangedDuringRun(
            f"{shown_under_root(Path(recorded.path), root)} changed while it was being processed; nothing was published, "
            f"and it will be processed again once it is stable"
        )
