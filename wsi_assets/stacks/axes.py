"""What a TIFF stack holds, as TCZYX: its axes and where they came from, dtype, physical sizes, channels.

Axes come from OME-XML (OME-TIFF), from the ImageJ hyperstack description, or are guessed for a
plain multi-page TIFF: its one page axis is taken as Z (Fiji takes it as T; neither can know),
and `axes_source == "guessed"` says so. A file whose pages could be more than one unnamed axis
is refused rather than guessed, and so is OME-XML that does not match the file's planes, or that
is cut short: such a file is never read as a plain TIFF with guessed axes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.storage import storage_problem

CANONICAL = "TCZYX"
OME, IMAGEJ, GUESSED = "ome", "imagej", "guessed"
# Letters tifffile gives axes it cannot name (I: image sequence, Q: unknown); one of them is read as Z.
UNNAMED_AXES = "IQ"
_TO_MICROMETRES = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "\\u00B5m": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "pm": 1e-6,
}
_TO_SECONDS = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "µs": 1e-6}


@dataclass(frozen=True)
class StackInfo:
    path: str
    shape: tuple[int, int, int, int, int]  # T, C, Z, Y, X
    dtype: str
    axes_source: str  # ome | imagej | guessed
    file_axes: str  # the axes as the file orders them, e.g. "TZCYX"
    physical_size_um: dict[str, float | None] = field(default_factory=dict)  # z, y, x
    time_step_s: float | None = None
    channel_names: tuple[str, ...] = ()
    file_size_bytes: int = 0
    images_in_file: int = 1  # an OME-TIFF may hold several images (series); only the first is read

    @property
    def axes(self) -> str:
        return CANONICAL

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(CANONICAL, self.shape))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict:
        data = asdict(self)
        data["axes"] = CANONICAL
        return data

    @classmethod
    def from_json(cls, data: dict) -> StackInfo:
        data = {k: v for k, v in data.items() if k != "axes"}
        data["shape"] = tuple(data["shape"])
        data["channel_names"] = tuple(data["channel_names"])
        return cls(**data)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class _Complaints(logging.Handler):
    """tifffile logs (rather than raises) directories and tags it must skip: in a stack they mean lost planes."""

    DAMAGE_WORDS = ("missing", "invalid", "corrupt", "truncat", "failed")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Any OME series warning means tifffile read the planes otherwise than the OME-XML says
        # (planes dropped, zero-filled, or the series skipped).
        if (
            record.levelno >= logging.ERROR
            or "OME series" in message
            or any(word in message.lower() for word in self.DAMAGE_WORDS)
        ):
            self.messages.append(message)


def open_tiff(path: Path) -> tifffile.TiffFile:
    """The TIFF opened with every directory and its first series parsed; StackReadError when any of it is damaged."""
    name = Path(path).name
    complaints = _Complaints()
    logger = logging.getLogger("tifffile")
    logger.addHandler(complaints)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tif = tifffile.TiffFile(str(path))
            tif.series  # noqa: B018 - parsing the series reads every page directory
    except Exception as error:  # noqa: BLE001 - any parse failure is a damaged or foreign file
        raise StackReadError(f"{name}: not a TIFF stack tifffile can read ({_one_line(error)})") from None
    finally:
        logger.removeHandler(complaints)
    if complaints.messages:
        tif.close()
        detail = complaints.messages[0].splitlines()[0].split("> ", 1)[-1][:160]
        if "OME series" in detail:
            raise StackReadError(
                f"{name}: inconsistent OME metadata: the OME-XML does not match the file's planes ({detail}); re-export it"
            )
        raise StackReadError(f"{name}: damaged or truncated file ({detail}); upload it again")
    return tif


def _axis_map(series_axes: str, shape: tuple[int, ...], name: str) -> tuple[str, dict[str, int]]:
    """(file axes with unnamed ones renamed, size per canonical axis); StackReadError when ambiguous."""
    planes = int(np.prod([n for a, n in zip(series_axes, shape) if a not in "YXS"], dtype=np.int64))
    if planes < 2:
        raise StackReadError(
            f"{name}: a 2D image ({series_axes} {tuple(shape)}), not a stack: a stack has several T, C or Z planes"
        )
    if "S" in series_axes and shape[series_axes.index("S")] > 1:
        raise StackReadError(
            f"{name}: RGB pages (samples per pixel > 1) are not read as a stack; save each channel as its own plane"
        )
    unnamed = [a for a, n in zip(series_axes, shape) if a in UNNAMED_AXES and n > 1]
    other = [a for a, n in zip(series_axes, shape) if a not in CANONICAL + UNNAMED_AXES + "S" and n > 1]
    if len(unnamed) > 1 or other:
        raise StackReadError(
            f"{name}: cannot tell which of its page axes '{series_axes}' are T, C and Z; "
            "save it as OME-TIFF or as an ImageJ hyperstack so its axes are named"
        )
    renamed = "".join("Z" if a in UNNAMED_AXES and n > 1 and "Z" not in series_axes else a for a, n in zip(series_axes, shape))
    sizes = {a: 1 for a in CANONICAL}
    for axis, n in zip(renamed, shape):
        if axis in CANONICAL:
            sizes[axis] = n
    return renamed, sizes


def _ome_details(tif: tifffile.TiffFile, name: str, sizes: dict[str, int]) -> tuple[dict, float | None, tuple[str, ...]]:
    try:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        image = ome["Image"][0] if isinstance(ome["Image"], list) else ome["Image"]
        pixels = image["Pixels"]
    except Exception as error:  # noqa: BLE001
        raise StackReadError(f"{name}: its OME-XML cannot be read ({_one_line(error)}); re-export it as OME-TIFF") from None
    stated = {axis: int(pixels.get(f"Size{axis}", 1)) for axis in CANONICAL}
    if stated != sizes:
        said = "×".join(f"{a}{stated[a]}" for a in CANONICAL)
        found = "×".join(f"{a}{sizes[a]}" for a in CANONICAL)
        raise StackReadError(
            f"{name}: inconsistent OME metadata: the OME-XML says {said} but the file holds {found}; re-export it"
        )

    def length(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        return (
            None if value is None else float(value) * _TO_MICROMETRES.get(str(pixels.get(f"PhysicalSize{axis}Unit", "µm")), 1.0)
        )

    step = pixels.get("TimeIncrement")
    time_step = None if step is None else float(step) * _TO_SECONDS.get(str(pixels.get("TimeIncrementUnit", "s")), 1.0)
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    names = tuple(str(c.get("Name") or f"C{i}") for i, c in enumerate(channels)) if len(channels) == sizes["C"] else ()
    return {"z": length("Z"), "y": length("Y"), "x": length("X")}, time_step, names


def _imagej_details(tif: tifffile.TiffFile) -> tuple[dict, float | None, tuple[str, ...]]:
    meta = tif.imagej_metadata or {}
    scale = _TO_MICROMETRES.get(str(meta.get("unit", "")), None)
    page = tif.pages.first

    def per_pixel(tag: str) -> float | None:
        value = page.tags.get(tag)
        if scale is None or value is None or not value.value[0]:
            return None
        numerator, denominator = value.value
        return denominator / numerator * scale

    z = meta.get("spacing")
    labels = meta.get("Labels")
    names = tuple(labels) if isinstance(labels, (list, tuple)) and len(labels) == meta.get("channels", 0) else ()
    step = meta.get("finterval")
    return (
        {
            "z": None if z is None or scale is None else float(z) * scale,
            "y": per_pixel("YResolution"),
            "x": per_pixel("XResolution"),
        },
        None if step is None else float(step),
        names,
    )


def _check_complete(tif: tifffile.TiffFile, series, name: str, file_size: int) -> None:
    """A truncated upload: some plane's bytes lie past the end of the file."""
    for page in series.pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
        if ends and max(ends) > file_size:
            raise StackReadError(
                f"{name}: truncated file: its planes end at byte {max(ends):,} but the file has {file_size:,} bytes; upload it again"
            )


def _looks_like_ome(tif: tifffile.TiffFile) -> bool:
    """The first page's description is OME-XML, whole or not: tifffile names a file OME only when the XML ends properly."""
    description = tif.pages.first.description or ""
    return "<OME" in description[:4096] and "openmicroscopy.org" in description[:4096]


def read_stack_info(path: Path) -> StackInfo:
    """The stack's TCZYX shape, dtype, physical sizes and channel names; StackReadError (one line) when it is not one."""
    path, name = Path(path), Path(path).name
    with open_tiff(path) as tif:
        if not tif.series:
            raise StackReadError(f"{name}: holds no image")
        series = tif.series[0]
        source = OME if tif.is_ome else IMAGEJ if tif.is_imagej else GUESSED
        if tif.is_ome and series.kind != "ome":
            raise StackReadError(
                f"{name}: inconsistent OME metadata: tifffile cannot match its OME-XML to its pages; re-export it"
            )
        if not tif.is_ome and _looks_like_ome(tif):
            raise StackReadError(
                f"{name}: damaged OME metadata: its OME-XML is cut short or does not end in </OME>; re-export it"
            )
        file_axes, sizes = _axis_map(series.axes, series.shape, name)
        problem = storage_problem(series.keyframe, name)
        if problem:
            raise StackReadError(problem)
        if source == OME:
            physical, step, names = _ome_details(tif, name, sizes)
        elif source == IMAGEJ:
            physical, step, names = _imagej_details(tif)
        else:
            physical, step, names = {"z": None, "y": None, "x": None}, None, ()
        file_size = os.path.getsize(path)
        _check_complete(tif, series, name, file_size)
        return StackInfo(
            path=str(path),
            shape=tuple(sizes[a] for a in CANONICAL),
            dtype=str(series.dtype),
            axes_source=source,
            file_axes=file_axes,
            physical_size_um=physical,
            time_step_s=step,
            channel_names=names or tuple(f"C{i}" for i in range(sizes["C"])),
            file_size_bytes=file_size,
            images_in_file=len(tif.series),
        )
