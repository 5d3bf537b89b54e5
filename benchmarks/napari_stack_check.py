"""A stack's OME-Zarr copy opened the way microscopists open one: napari with napari-ome-zarr, in a real Qt window.

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/napari_stack_check.py [--stack nuclei | --zarr PATH] [--out PNG]

By default it builds a T=2, C=3, Z=5, 300×400 uint16 stack with channels DAPI, GFP and mCherry
(0.3 µm/px) with the synthetic generator, and copies it with the product's own writer.
`--stack nuclei` builds the synthetic nuclei stack instead (DAPI and GFP, sparse nuclei over a
dark background) and runs the product's nuclei step on it, which adds `labels/nuclei/`.
`--zarr` checks an existing copy (e.g. a published `stack.ome.zarr`). It then checks, and exits 1
when any check failed:
- each channel is a named layer with the t and z sliders and the physical scale;
- each channel's visible range: most pixels of the slice on screen lie between the window's
  start and end (contrast limits as napari read them from the metadata), few at or beyond either,
  and the values fill a good part of the window (a 0..65535 window over values of ~1,000 fails);
- the screenshot of each channel alone is neither black nor saturated, in the colour its name
  calls for (DAPI blue, GFP green, mCherry red, ...);
- labels, when the copy has them, open as a Labels layer.
It saves the composite screenshot (and one with the labels shown, when there are any).
Needs napari, napari-ome-zarr and a Qt binding (not test requirements): pip install napari napari-ome-zarr PyQt5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wsi_assets.stacks.channel_colours import named_colour

INSIDE_AT_LEAST = 0.9  # of a slice's pixels strictly between the window's start and end
BEYOND_AT_MOST = 0.05  # of its pixels at or below start (black), and at or above end (saturated)
# The screenshot's 99th percentile in the channel's colour, of 255 (the old 0..65535 window gave ~6): a percentile, not
# the mean, so that sparse nuclei over a dark background count as visible.
BRIGHT_ENOUGH = 100.0
FILLS_AT_LEAST = 0.25  # of the window, the slice's 1st..99th percentile span (a 0..65535 window over values of ~1,000: 0.01)
SATURATED_AT_MOST = 0.2  # of the image's pixels at 255 in the channel's colour
OUT = Path(__file__).resolve().parent / "output" / "napari_stack.png"


def build_stack(folder: Path, kind: str) -> Path:
    from wsi_assets.stacks.axes import read_stack_info
    from wsi_assets.stacks.ome_zarr import write_ome_zarr

    if kind == "synthetic":
        from wsi_assets.stacks.synthetic import StackSpec, write_ome_tiff

        spec = StackSpec(t=2, c=3, z=5, y=300, x=400, physical_size_um=(1.0, 0.3, 0.3), channel_names=("DAPI", "GFP", "mCherry"))
        path = write_ome_tiff(folder / "cells.ome.tif", spec)
    else:
        from wsi_assets.stacks.synthetic_nuclei import NucleiStackSpec, write_nuclei_stack

        path = write_nuclei_stack(folder / "nuclei.ome.tif", NucleiStackSpec())
    info = read_stack_info(path)
    write_ome_zarr(path, info, folder / "stack.ome.zarr")
    if kind == "nuclei":
        add_nuclei(folder / "stack.ome.zarr", info, folder / "nuclei.parquet")
    return folder / "stack.ome.zarr"


def add_nuclei(zarr_folder: Path, info, table: Path) -> None:
    """The product's nuclei step (as the stack_nuclei asset runs it): labels/nuclei/ in the copy."""
    from wsi_assets.stacks.nuclear_channel import choose_nuclear_channel
    from wsi_assets.stacks.nuclei import segment_stack_nuclei
    from wsi_assets.stacks.plane_segmenter import stack_segmenter

    channel = choose_nuclear_channel(info.channel_names)
    segmenter = stack_segmenter("default", info.physical_size_um.get("x"))
    summary = segment_stack_nuclei(zarr_folder, info, channel.index, segmenter.segment, table)
    print(f"nuclei: {summary.nuclei_rows} rows by {segmenter.model} in channel {channel.name}")


def settle(viewer, seconds: float = 1.0) -> None:
    """Let Qt draw (and napari load the visible tiles) before a screenshot."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def image_area(shot: np.ndarray) -> np.ndarray:
    """The screenshot's pixels inside the bounding box of everything not background-black."""
    lit = shot[..., :3].max(axis=2) > 0
    rows, cols = np.nonzero(lit.any(axis=1))[0], np.nonzero(lit.any(axis=0))[0]
    if not rows.size:
        return shot[..., :3]
    return shot[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, :3]


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)]) / 255


def check(zarr_folder: Path, out: Path) -> list[str]:
    import napari

    failures: list[str] = []
    omero = json.loads((zarr_folder / "zarr.json").read_text())["attributes"]["ome"]["omero"]["channels"]
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1000, 800)  # the same canvas size on every machine
    layers = viewer.open(str(zarr_folder), plugin="napari-ome-zarr")
    images = [layer for layer in layers if isinstance(layer, napari.layers.Image)]
    labels = [layer for layer in layers if isinstance(layer, napari.layers.Labels)]
    print(f"layers: {[(type(layer).__name__, layer.name) for layer in layers]}")
    # napari-ome-zarr names a channel's layer "<image name>: <channel label>".
    if [layer.name.rsplit(": ", 1)[-1] for layer in images] != [c["label"] for c in omero]:
        failures.append(f"image layers {[layer.name for layer in images]} are not the channels {[c['label'] for c in omero]}")
    print(f"dims: {dict(zip(viewer.dims.axis_labels, viewer.dims.nsteps))}, scale {[round(s, 3) for s in images[0].scale]}")

    viewer.reset_view()
    for layer in images:
        layer.visible = True
    for labels_layer in labels:
        labels_layer.visible = False
    settle(viewer)
    composite = viewer.screenshot(canvas_only=True, flash=False)
    composite_p99 = float(np.percentile(image_area(composite), 99))
    if composite_p99 < BRIGHT_ENOUGH:
        failures.append(f"the composite screenshot is black (99th percentile {composite_p99:.0f} of 255)")

    for index, layer in enumerate(images):
        start, end = layer.contrast_limits
        data = layer.data[0] if layer.multiscale else layer.data
        shown = tuple(int(round(v)) for v in layer.world_to_data(viewer.dims.point)[: data.ndim - 2])  # the plane on screen
        values = np.asarray(data[shown])
        inside = float(((values > start) & (values < end)).mean())
        low, high = np.percentile(values, (1, 99))
        fills = float((high - low) / (end - start))
        black, saturated = float((values <= start).mean()), float((values >= end).mean())
        for other in images:
            other.visible = other is layer
        settle(viewer, 0.5)
        shot = image_area(viewer.screenshot(canvas_only=True, flash=False)).astype(np.float64)
        label, colour = omero[index]["label"], omero[index]["color"]
        if not np.allclose(np.asarray(layer.colormap.colors)[-1, :3], rgb(colour), atol=0.01):
            failures.append(f"{label}: napari's colormap ends at {layer.colormap.colors[-1]}, not the metadata's {colour}")
        components = rgb(colour) > 0
        brightness = float(np.percentile(shot[..., components], 99))
        at_top = float((shot[..., components] >= 254).all(axis=-1).mean())
        dark = float(np.percentile(shot[..., ~components], 99)) if (~components).any() else 0.0
        print(
            f"{layer.name}: window {start:g}..{end:g}, colormap {layer.colormap.name}, plane {shown}: {inside:.1%} inside, "
            f"{black:.1%} at/below start, {saturated:.1%} at/above end, p1..p99 span {fills:.0%} of it; screenshot in {colour}: p99 {brightness:.0f}, "
            f"{at_top:.1%} saturated, other components p99 {dark:.0f}"
        )
        if fills < FILLS_AT_LEAST:
            failures.append(f"{layer.name}: the slice's values span {fills:.1%} of its window {start:g}..{end:g}: shown dim")
        if inside < INSIDE_AT_LEAST or black > BEYOND_AT_MOST or saturated > BEYOND_AT_MOST:
            failures.append(
                f"{layer.name}: {inside:.1%} of the slice inside its window {start:g}..{end:g} "
                f"({black:.1%} black, {saturated:.1%} saturated)"
            )
        if brightness < BRIGHT_ENOUGH:
            failures.append(f"{layer.name}: looks black in napari (99th percentile {brightness:.0f} of 255 in its colour)")
        if at_top > SATURATED_AT_MOST:
            failures.append(f"{layer.name}: looks saturated in napari ({at_top:.1%} of the image at 255)")
        if dark > 0.25 * brightness:
            failures.append(f"{layer.name}: shown in other colours than {colour} (other components p99 {dark:.0f})")
        expected = named_colour(label)
        if expected is not None and colour != expected:
            failures.append(f"{label}: colour {colour}, its name calls for {expected}")

    out.parent.mkdir(parents=True, exist_ok=True)
    for layer in images:
        layer.visible = True
    settle(viewer)
    import imageio.v3 as iio

    images_only = viewer.screenshot(canvas_only=True, flash=False)
    iio.imwrite(out, images_only)
    print(f"wrote {out}")
    if (zarr_folder / "labels" / "zarr.json").is_file() and not labels:
        failures.append("the copy lists labels but napari opened no Labels layer")
    for labels_layer in labels:
        labels_layer.visible = True  # napari-ome-zarr opens labels hidden
        shape = labels_layer.data[0].shape if labels_layer.multiscale else labels_layer.data.shape
        print(f"labels layer {labels_layer.name}: shape {shape}, axes {labels_layer.axis_labels}")
        if labels_layer.ndim != images[0].ndim:
            # napari lines layers up by their trailing axes: a 5-D label image under 4-D channel layers puts the
            # image's t on the labels' c, and the labels show nothing at the slice on screen.
            failures.append(
                f"{labels_layer.name}: {labels_layer.ndim}-D {labels_layer.axis_labels} under {images[0].ndim}-D images "
                f"{images[0].axis_labels}: napari does not align them (write labels without the c axis)"
            )
    if labels:
        settle(viewer)
        labelled = out.with_name(out.stem + "_labels.png")
        with_labels = viewer.screenshot(canvas_only=True, flash=False)
        iio.imwrite(labelled, with_labels)
        print(f"wrote {labelled}")
        if np.array_equal(with_labels, images_only):
            failures.append("the Labels layer, shown, changes nothing on screen")
    viewer.close()
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=("synthetic", "nuclei"), default="synthetic", help="the stack to build and check")
    parser.add_argument("--zarr", type=Path, help="an existing stack.ome.zarr to check instead")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    folder = args.zarr or build_stack(Path(tempfile.mkdtemp(prefix="napari_stack_")), args.stack)
    failures = check(folder, args.out)
    for failure in failures:
        print(f"FAILED: {failure}")
    print("PASSED" if not failures else f"{len(failures)} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
