"""Whether a stable upload is a slide, a stack, or neither (and why): the rule that tells them apart.

- A file named `<name>.ome.tif` / `.ome.tiff` is a stack (an OME-TIFF).
- Another TIFF is a stack when it holds several planes (OME-XML, an ImageJ hyperstack, or a plain
  multi-page TIFF of same-sized grayscale pages) and OpenSlide does not read it; it is a slide
  when OpenSlide reads it and it holds one plane (a pyramid of one image).
- A TIFF both read by OpenSlide and holding several planes is ambiguous and skipped, with how to
  make it one or the other. Other extensions are slides as before.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.uploads.checks import slide_format_problem
from wsi_assets.uploads.listing import upload_stem

SLIDE, STACK = "slide", "stack"
STACK_SUFFIXES = (".tif", ".tiff")


def is_ome_tiff_name(name: str) -> bool:
    return name.lower().endswith((".ome.tif", ".ome.tiff"))


def _stack_problem(path: Path) -> str | None:
    try:
        read_stack_info(path)
    except StackReadError as error:
        text = str(error)
        return text.split(": ", 1)[1] if text.startswith(path.name + ": ") else text
    return None


def upload_kind(path: Path) -> tuple[str | None, str | None]:
    """(SLIDE or STACK, None), or (None, why it is skipped)."""
    path = Path(path)
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
