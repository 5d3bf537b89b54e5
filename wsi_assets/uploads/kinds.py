"""Whether a stable upload is a slide, a stack, or neither (and why): the rule that tells them apart.

- A file named `<name>.ome.tif` / `.ome.tiff` is a stack (an OME-TIFF).
- Another TIFF is a stack when it holds several planes (OME-XML, an ImageJ hyperstack, or a plain
  multi-page TIFF of same-sized grayscale pages) and OpenSlide does not read it; it is a slide
  when OpenSlide reads it and it holds one plane (a pyramid of one image).
- A TIFF both read by OpenSlide and holding several planes is ambiguous and skipped, with how to
  make it one or the other. Other extensions are slides as before.

The sensor decides this for every stable upload, so the cost is bounded: OpenSlide and tifffile
read a file's whole structure, and are only handed files whose outline (wsi_assets.uploads.peek:
the header and at most 1,024 directories) is small. A larger file is taken by its name and
outline alone, and its run makes the full check (and fails in one line if it fails).
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.uploads.checks import slide_format_problem
from wsi_assets.uploads.listing import upload_stem
from wsi_assets.uploads.peek import looks_like_a_stack, tiff_outline

SLIDE, STACK = "slide", "stack"
STACK_SUFFIXES = (".tif", ".tiff")
# OpenSlide reads these index files whole (GLib key files): a few KB when real.
INDEX_SUFFIXES = (".vms", ".vmu", ".mrxs")
MAX_INDEX_BYTES = 1 * 2**20


def is_ome_tiff_name(name: str) -> bool:
    return name.lower().endswith((".ome.tif", ".ome.tiff"))


def _stack_problem(path: Path) -> str | None:
    try:
        read_stack_info(path)
    except StackReadError as error:
        text = str(error)
        return text.split(": ", 1)[1] if text.startswith(path.name + ": ") else text
    return None


def _index_files(path: Path) -> list[Path]:
    files = [path]
    if path.suffix.lower() == ".mrxs":  # MIRAX keeps its index in <stem>/Slidedat.ini
        files.append(path.with_suffix("") / "Slidedat.ini")
    return files


def kind_left_to_the_run(path: Path) -> str | None:
    """SLIDE or STACK when checking the file here would read too much (its run checks it), else None."""
    path = Path(path)
    if path.suffix.lower() in INDEX_SUFFIXES:
        sizes = [f.stat().st_size for f in _index_files(path) if f.is_file()]
        return SLIDE if any(size > MAX_INDEX_BYTES for size in sizes) else None
    outline = tiff_outline(path)
    if outline is None or outline.bounded:
        return None  # not a TIFF (the libraries stop at its first bytes), or small enough to read whole
    if is_ome_tiff_name(path.name) or (path.suffix.lower() in STACK_SUFFIXES and looks_like_a_stack(outline)):
        return STACK
    return SLIDE


def upload_kind(path: Path) -> tuple[str | None, str | None]:
    """(SLIDE or STACK, None), or (None, why it is skipped). Bounded: see kind_left_to_the_run."""
    path = Path(path)
    left = kind_left_to_the_run(path)
    if left is not None:
        return left, None
    if path.suffix.lower() not in STACK_SUFFIXES:
        problem = slide_format_problem(path)
        return (SLIDE, None) if problem is None else (None, problem)
    stack_problem = _stack_problem(path)
    if is_ome_tiff_name(path.name):
        return (STACK, None) if stack_problem is None else (None, f"not a usable stack: {stack_problem}")
    slide_problem = slide_format_problem(path)
    if slide_problem is None and stack_problem is None:
        stem = upload_stem(path.name)
        return None, (
            "ambiguous: OpenSlide reads it as a whole-slide image and it also holds several planes like a stack; "
            f"rename it {stem}.ome.tif (with OME metadata) to make it a stack, or save one image per file to make it a slide"
        )
    if slide_problem is None:
        return SLIDE, None
    if stack_problem is None:
        return STACK, None
    if "a 2D image" in stack_problem:
        return None, f"{slide_problem}, and {stack_problem}"
    return None, f"{slide_problem}; not a stack either: {stack_problem}"


def not_a_stack(path: Path) -> str | None:
    """Why the upload is not a stack (for `submit --job process_stack`), or None when it is one."""
    kind, problem = upload_kind(path)
    if kind == SLIDE:
        return "a slide, not a stack: queue process_slide for it"
    return problem
