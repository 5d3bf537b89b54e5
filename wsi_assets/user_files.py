"""Where uploads are read from and outputs are written to, and atomic writes there."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from wsi_assets.slide_keys import DEFAULT_BRANCH, SlideKey

USER_FILES_ENV = "WSI_USER_FILES"

# Extensions OpenSlide reads as whole-slide images. A file with another extension is not a slide.
SLIDE_EXTENSIONS = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm"}
)


def default_user_files_root() -> Path:
    return Path(os.environ.get(USER_FILES_ENV, "user_files")).resolve()


def inputs_dir(root: Path, user: str) -> Path:
    return Path(root) / user / "inputs"


def branch_inputs_dir(root: Path, user: str, branch: str) -> Path:
    return inputs_dir(root, user) / branch


def slide_output_dir(root: Path, key: SlideKey) -> Path:
    return Path(root) / key.user / "outputs" / key.branch / key.stem


def slide_candidates(root: Path, key: SlideKey) -> list[Path]:
    """Uploaded files whose branch and stem match `key` (a file directly in inputs/ is branch main)."""
    folders = [branch_inputs_dir(root, key.user, key.branch)]
    if key.branch == DEFAULT_BRANCH:
        folders.append(inputs_dir(root, key.user))
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and entry.suffix.lower() in SLIDE_EXTENSIONS and entry.stem == key.stem:
                found.append(entry)
    return sorted(found)


def find_slide_file(root: Path, key: SlideKey) -> Path:
    """The one uploaded file behind `key`; a clear error when there is none or several."""
    found = slide_candidates(root, key)
    if not found:
        raise FileNotFoundError(
            f"no uploaded slide for {key}: expected {branch_inputs_dir(root, key.user, key.branch)}/"
            f"{key.stem}.<svs|tif|ndpi|...>"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise FileExistsError(f"{key} is ambiguous: {names} share the stem '{key.stem}'; rename one")
    return found[0]


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    Readers never see a half-written output, and a failed write leaves the previous one in place.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    try:
        yield temporary
        os.replace(temporary, final) if not temporary.is_dir() else _replace_dir(temporary, final)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def _replace_dir(temporary: Path, final: Path) -> None:
    # A directory cannot atomically replace a non-empty one: move the old aside first.
    if final.exists():
        old = _temporary_sibling(final)
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    with atomic_output(final) as temporary:
        temporary.write_bytes(data)
    return Path(final)


def write_text_atomic(final: Path, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))
