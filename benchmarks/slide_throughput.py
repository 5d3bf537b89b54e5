"""Whole-slide throughput against decoding, and peak memory, in one process run.

    python benchmarks/slide_throughput.py --size 7072x7072            # ~50 Mpx synthetic slide
    python benchmarks/slide_throughput.py --size 32768x32768          # ~1 Gpx
    python benchmarks/slide_throughput.py --slide path/to/slide.svs   # any slide
    python benchmarks/slide_throughput.py --model learned             # the shipped learned model (default: classical)

Decode-only: the same tissue tiles the segmentation reads, read and resampled to the model's
µm/px by the same number of reader threads, nothing else. End-to-end: what process_slide does by
default, from opening the slide to written exports: metadata, tissue mask, segmentation with each
nucleus's measurements and embedding, classification by the default classifier, and every export
that is on by default (`--all-exports` adds the optional COCO and YOLO tile folders). The speed
ratio is end-to-end tissue mm²/s over decode-only tissue mm²/s. Decoding runs first, so both
read the file from a warm page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wsi_assets.cells.classification import DEFAULT_METHOD, classification_method, classify_stored_cells
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import NucleusMeasurer
from wsi_assets.cells.stain_vectors import DEFAULT_STAINS
from wsi_assets.cells.store import stored_embedding
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.slide import TilingSettings, _read_tile, segment_slide
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import open_slide, read_whole_slide_at_downsample
from wsi_assets.slides.tiling import make_tile_grid
from wsi_assets.slides.tissue import detect_tissue, tissue_mask_downsample

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tissue_of(path: Path, mpp: float, width: int, height: int):
    downsample = tissue_mask_downsample(width, height, mpp)
    with open_slide(path) as slide:
        low_res = read_whole_slide_at_downsample(slide, downsample)
    return detect_tissue(low_res, downsample, mpp)


def decode_only(path: Path, mpp: float, tissue, model_mpp: float, settings: TilingSettings) -> dict:
    started = time.perf_counter()
    with open_slide(path) as slide:
        width, height = slide.dimensions
        grid = make_tile_grid(width, height, mpp, model_mpp, settings.core, settings.margin)
        tiles = grid.tissue_tiles(tissue)
        with ThreadPoolExecutor(settings.read_threads) as readers:
            for _ in readers.map(lambda t: _read_tile(slide, t, grid).shape, tiles):
                pass
    seconds = time.perf_counter() - started
    core_px = sum((t.core_x1 - t.core_x0) * (t.core_y1 - t.core_y0) for t in tiles)
    return {"tiles": len(tiles), "seconds": seconds, "level0_mpx": core_px / 1e6}


def end_to_end(
    path: Path,
    work: Path,
    default_mpp: float,
    settings: TilingSettings,
    segmenter,
    exports: bool = True,
    all_exports: bool = False,
) -> dict:
    """Open → metadata → tissue → cells.parquet with measurements → classes (→ the default exports,
    or every one with `all_exports`, unless `exports` is False: then segmentation alone, as the GPU sitting measures)."""
    formats = []
    if exports:  # imported only then: the GPU sitting measures without exports where zarr is missing
        from wsi_assets.cells.exports import EXPORT_FORMATS
        from wsi_assets.cells.exports.provenance import export_provenance

        formats = [export for export in EXPORT_FORMATS if export.default_on or all_exports]
    started = time.perf_counter()
    info = read_slide_info(path, default_mpp)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    # Where a slide folder keeps it: the GeoParquet export is also named cells.parquet.
    cells = work / "segmentation" / "cells.parquet"
    cells.parent.mkdir(parents=True, exist_ok=True)
    measurer = NucleusMeasurer(segmenter.mpp, DEFAULT_STAINS) if exports else None
    summary = segment_slide(path, info.mpp, tissue, segmenter, cells, settings, measurer=measurer)
    classified = time.perf_counter()
    if exports:
        method = classification_method(DEFAULT_METHOD, LymphocyteRule(), None, stored_embedding(cells))
        classify_stored_cells(cells, cells.with_name("classified.parquet"), method, info.mpp)
        cells.with_name("classified.parquet").replace(cells)
    exported = time.perf_counter()
    # The segmentation's summary.json, as the cell_segmentation asset writes it: exports read it.
    figures = {"slide": path.name, "mpp": info.mpp, "segmenter": segmenter.name, "segmenter_version": segmenter.version}
    (cells.parent / "summary.json").write_text(json.dumps({**figures, **summary.__dict__, "mm2_per_s": summary.mm2_per_s}))
    for export in formats:
        provenance = {
            **export_provenance(cells.parent / "summary.json", path.stem, path.name, slide_path=path),
            "slide_width": info.width,
            "slide_height": info.height,
        }
        export.write(cells, work / export.file_name, provenance)
    ended = time.perf_counter()
    return {
        "seconds": ended - started,
        "nuclei": summary.cells,
        "tissue_mm2": tissue.area_mm2,
        "segmentation_seconds": summary.seconds,
        "classification_seconds": exported - classified,
        "export_seconds": ended - exported,
        "exports": [export.file_name for export in formats],
        "segmenter": f"{segmenter.name} v{segmenter.version}",
        "device": segmenter.device,
    }


def synthetic_slide(size: str, seed: int, folder: Path) -> Path:
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    width, height = (int(v) for v in size.lower().split("x"))
    path = folder / f"synthetic_{width}x{height}_s{seed}.svs"
    if not path.exists():
        started = time.perf_counter()
        write_synthetic_slide(path, SyntheticSlideSpec(width=width, height=height, seed=seed))
        print(f"wrote {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path)
    parser.add_argument("--size", default="7072x7072", help="synthetic slide WIDTHxHEIGHT when no --slide")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--slides-dir", type=Path, default=Path(tempfile.gettempdir()) / "wsi_bench_slides")
    parser.add_argument("--read-threads", type=int, default=TilingSettings().read_threads)
    parser.add_argument("--model", default="default", help='"default", "classical", "learned" or a TorchScript file')
    parser.add_argument("--device", default="auto")
    parser.add_argument("--all-exports", action="store_true", help="also the exports that are off by default (COCO, YOLO)")
    args = parser.parse_args()

    args.slides_dir.mkdir(parents=True, exist_ok=True)
    path = args.slide or synthetic_slide(args.size, args.seed, args.slides_dir)
    settings = TilingSettings(read_threads=args.read_threads)
    info = read_slide_info(path)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    segmenter = get_segmenter(args.model, device=args.device)
    model_mpp = segmenter.mpp
    decode = decode_only(path, info.mpp, tissue, model_mpp, settings)
    rss_after_decode = peak_rss_mb()
    work = Path(tempfile.mkdtemp(prefix="wsi_e2e_"))
    try:
        e2e = end_to_end(path, work, info.mpp, settings, segmenter, all_exports=args.all_exports)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from wsi_assets.slides.synthetic import count_synthetic_nuclei, read_synthetic_spec

    spec = read_synthetic_spec(path)
    drawn = count_synthetic_nuclei(spec) if spec else None
    decode_mm2_s = tissue.area_mm2 / decode["seconds"]
    e2e_mm2_s = e2e["tissue_mm2"] / e2e["seconds"]
    result = {
        "slide": path.name,
        "size_px": [info.width, info.height],
        "mpix": round(info.width * info.height / 1e6, 1),
        "tissue_mm2": round(tissue.area_mm2, 2),
        "tiles": decode["tiles"],
        "read_threads": settings.read_threads,
        "decode_s": round(decode["seconds"], 2),
        "decode_mm2_per_s": round(decode_mm2_s, 3),
        "decode_mpx_per_s": round(decode["level0_mpx"] / decode["seconds"], 2),
        "end_to_end_s": round(e2e["seconds"], 2),
        "end_to_end_mm2_per_s": round(e2e_mm2_s, 4),
        "end_to_end_mpx_per_s": round(decode["level0_mpx"] / e2e["seconds"], 3),
        "speed_ratio": round(e2e_mm2_s / decode_mm2_s, 4),
        "segmentation_s": round(e2e["segmentation_seconds"], 2),
        "classification_s": round(e2e["classification_seconds"], 2),
        "exports_s": round(e2e["export_seconds"], 2),
        "exports": e2e["exports"],
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "peak_rss_after_decode_mb": round(rss_after_decode, 0),
        "decoded_level0_mb": round(info.width * info.height * 3 / 1e6, 0),
        "nuclei_found": e2e["nuclei"],
        "nuclei_drawn": drawn,
        "segmenter": e2e["segmenter"],
        "device": e2e["device"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
