"""µm/px you can trust: stated by the user (sidecar, branch.yaml), read from the file, or estimated from nuclei and flagged."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from wsi_assets.cells.exports.provenance import export_provenance
from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.quality.checks import nuclei_density, resolution_fine_enough
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import ESTIMATED, SlideReadError
from wsi_assets.slides.stored import save_slide_info
from wsi_assets.slides.synthetic import (
    SyntheticSlideSpec,
    render_region,
    write_synthetic_slide,
)
from wsi_assets.slides.tissue import TissueMask

APERIO_JPEG2000_RGB = 33005  # the codec of TCGA's Aperio SVS files, which OpenSlide decodes


def write_slide_without_resolution(path: Path, spec: SyntheticSlideSpec, compression=APERIO_JPEG2000_RGB) -> Path:
    """A two-level Aperio SVS of the synthetic slide with neither µm/px nor objective power (as many TCGA files)."""
    full = render_region(spec, 1, 0, 0, spec.width, spec.height)
    levels = [full, cv2.resize(full, (spec.width // 4, spec.height // 4), interpolation=cv2.INTER_AREA)]
    header = f"Aperio Image Library v12.0.0\r\n{spec.width}x{spec.height} [0,0 {spec.width}x{spec.height}] (256x256) J2K/KDU Q=70"
    with tifffile.TiffWriter(path) as writer:
        for level, image in enumerate(levels):
            writer.write(
                image,
                tile=(256, 256),
                compression=compression,
                photometric="rgb",
                metadata=None,
                description=header if level else f"{header}|ScanScope ID = SS1234",
                subfiletype=0 if level == 0 else 1,
            )
    return path


@pytest.fixture(scope="module")
def stated_slide(tmp_path_factory) -> Path:
    """A slide whose file says 0.25 µm/px, alone in its branch folder."""
    folder = tmp_path_factory.mktemp("inputs") / "branch1"
    folder.mkdir()
    return (
        write_synthetic_slide(folder / "slide01.svs", SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=4))
        and folder / "slide01.svs"
    )


@pytest.fixture(autouse=True)
def _no_settings_left(stated_slide):
    yield
    for name in ("slide01.yaml", "branch.yaml"):
        (stated_slide.parent / name).unlink(missing_ok=True)


def test_sidecar_wins_over_the_file_and_the_branch(stated_slide):
    (stated_slide.parent / "branch.yaml").write_text("mpp: 0.4\nexports: [csv]\n")
    (stated_slide.parent / "slide01.yaml").write_text("mpp: 0.5\n")
    info = read_slide_info(stated_slide)
    assert (info.mpp, info.mpp_source, info.mpp_inferred) == (0.5, "sidecar slide01.yaml", False)


def test_branch_yaml_states_mpp_for_every_slide_of_the_branch(stated_slide):
    (stated_slide.parent / "branch.yaml").write_text("model: learned\nmpp: 0.4\n")  # other known keys do not disturb mpp
    info = read_slide_info(stated_slide)
    assert (info.mpp, info.mpp_source, info.mpp_inferred) == (0.4, "branch.yaml", False)
    (stated_slide.parent / "branch.yaml").write_text("model: learned\n")
    assert read_slide_info(stated_slide).mpp_source == "slide"


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "slide01.yaml",
            "mpp: [0.5\n",
            "branch1/slide01.yaml is not valid YAML (line 2): write 'key: value' lines, e.g. 'mpp: 0.5'",
        ),
        ("slide01.yaml", "- 0.5\n", "branch1/slide01.yaml must hold 'key: value' lines (e.g. 'mpp: 0.5'), not a list"),
        (
            "slide01.yaml",
            "mpp: -0.5\n",
            "branch1/slide01.yaml: mpp = -0.5 is not a µm/px value; write a number from 0.05 to 20.0, e.g. 'mpp: 0.5'",
        ),
        (
            "branch.yaml",
            "mpp: half\n",
            "branch1/branch.yaml: mpp = 'half' is not a µm/px value; write a number from 0.05 to 20.0, e.g. 'mpp: 0.5'",
        ),
        (
            "branch.yaml",
            "mpp: .nan\n",
            "branch1/branch.yaml: mpp = nan is not a µm/px value; write a number from 0.05 to 20.0, e.g. 'mpp: 0.5'",
        ),
    ],
)
def test_malformed_settings_file_is_one_line_naming_it(stated_slide, name, text, message):
    (stated_slide.parent / name).write_text(text)
    before = stated_slide.read_bytes()
    with pytest.raises(SlideReadError) as caught:
        read_slide_info(stated_slide)
    assert str(caught.value) == message
    assert stated_slide.read_bytes() == before


@pytest.mark.parametrize("true_mpp", [0.25, 1.0])
def test_mpp_is_estimated_from_nuclei_within_25_percent(tmp_path, true_mpp):
    path = write_slide_without_resolution(
        tmp_path / "bare.svs", SyntheticSlideSpec(width=2048, height=1536, mpp=true_mpp, seed=8)
    )
    info = read_slide_info(path)
    assert info.mpp_source == ESTIMATED and info.mpp_inferred
    assert info.mpp == pytest.approx(true_mpp, rel=0.25)
    assert "typical nucleus" in info.mpp_detail


def test_exports_carry_the_inferred_flag(tmp_path):
    path = write_slide_without_resolution(tmp_path / "bare.svs", SyntheticSlideSpec(width=2048, height=1536, mpp=0.5, seed=8))
    outputs = SlideOutputs(tmp_path / "out")
    outputs.segmentation_json.parent.mkdir(parents=True)
    info = read_slide_info(path)
    save_slide_info(outputs, info)
    outputs.segmentation_json.write_text(json.dumps({"mpp": info.mpp, "segmenter": "classical", "segmenter_version": "1"}))
    provenance = export_provenance(outputs.segmentation_json, "u/main/bare", "bare.svs")
    assert provenance["mpp"] == info.mpp
    assert provenance["mpp_source"] == ESTIMATED and provenance["mpp_inferred"] is True
    assert provenance["mpp_detail"] == info.mpp_detail


def test_coarse_resolution_fails_its_check_with_the_reason(stated_slide):
    (stated_slide.parent / "slide01.yaml").write_text("mpp: 2.5\n")
    outcome = resolution_fine_enough(read_slide_info(stated_slide))
    assert not outcome.passed
    assert outcome.description == (
        "2.50 µm/px (sidecar slide01.yaml) makes a 7 µm nucleus 2.8 px across; nuclei need ≤ 1.5 µm/px: upload a 20x or 40x scan, "
        "or if this µm/px is wrong, state the true µm/px in slide01.yaml beside the slide ('mpp: 0.5') or in the branch's branch.yaml"
    )
    (stated_slide.parent / "slide01.yaml").unlink()
    assert resolution_fine_enough(read_slide_info(stated_slide)).passed


def _cells_file(path: Path, count: int) -> Path:
    labels = np.zeros((10 * count, 10), np.int32)
    for i in range(count):
        labels[10 * i + 2 : 10 * i + 7, 2:7] = i + 1
    with CellStoreWriter(path) as writer:
        writer.append(nuclei_from_labels(labels), 0, 0)
    return path


def test_implausible_density_fails_and_blames_the_resolution(tmp_path, stated_slide):
    info = read_slide_info(stated_slide)
    tissue = TissueMask(mask=np.ones((400, 400), bool), downsample=8.0, mpp=0.25)  # 0.64 mm² of tissue
    outcome = nuclei_density(_cells_file(tmp_path / "few.parquet", 10), tissue, info)
    assert not outcome.passed
    assert outcome.description == (
        "16 nuclei per mm² of tissue at 0.250 µm/px (slide; plausible: 50–25000): the µm/px is probably wrong; "
        "state the true µm/px in slide01.yaml beside the slide ('mpp: 0.5') or in the branch's branch.yaml"
    )
    assert nuclei_density(_cells_file(tmp_path / "many.parquet", 400), tissue, info).passed


def test_tcga_like_low_resolution_section_without_mpp_is_estimated_and_stopped_by_its_check(
    tmp_path, user_files_root, dagster_instance
):
    """A whole section at 3 µm/px, JPEG 2000 Aperio, no µm/px: the estimate is flagged and the resolution check fails."""
    spec = SyntheticSlideSpec(width=2048, height=1536, mpp=3.0, seed=21)
    path = write_slide_without_resolution(tmp_path / "tcga.svs", spec)
    info = read_slide_info(path)
    assert info.mpp_source == ESTIMATED and info.mpp_inferred and info.objective_power is None
    assert info.mpp == pytest.approx(3.0, rel=0.25)
    outcome = resolution_fine_enough(info)
    assert not outcome.passed and outcome.description.startswith(
        f"{info.mpp:.2f} µm/px (nucleus-size estimate) makes a 7 µm nucleus"
    )

    from wsi_assets.definitions import defs

    folder = user_files_root / "tina/inputs/main"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tcga.svs").write_bytes(path.read_bytes())
    dagster_instance.add_dynamic_partitions("slides", ["tina/main/tcga"])
    result = defs.resolve_job_def("tissue_mask_only").execute_in_process(
        instance=dagster_instance, partition_key="tina/main/tcga", raise_on_error=False
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = checks["slide_resolution_fine_enough"]
    assert not check.passed
    assert "nucleus-size estimate" in check.metadata["result"].value and "tcga.yaml" in check.metadata["result"].value
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["slide_metadata"]["mpp_inferred"].value is True
