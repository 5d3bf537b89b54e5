"""branch.yaml: one schema, one-line errors naming the file and the key, and it decides what a run writes."""

from __future__ import annotations

import json

import pytest

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.core.branch_settings import BranchSettings, read_branch_settings
from wsi_assets.slides.errors import SlideSettingsError
from wsi_assets_tests.conftest import run_process_slide

FILE = "alice/inputs/main/branch.yaml"


@pytest.fixture
def branch_yaml(tmp_path):
    folder = tmp_path / "alice" / "inputs" / "main"
    folder.mkdir(parents=True)
    return folder / "branch.yaml"


def test_no_file_means_every_default(branch_yaml):
    settings = read_branch_settings(branch_yaml)
    assert settings.export_names() == tuple(f.setting_name for f in EXPORT_FORMATS if f.default_on)
    assert {"csv", "zarr", "summary"} <= set(settings.export_names())
    assert "coco" not in settings.export_names() and "yolo" not in settings.export_names()
    assert (settings.tile_size, settings.cell_expansion_um, settings.mpp, settings.model) == (1024, 0.0, None, None)


def test_every_key_is_read(branch_yaml):
    branch_yaml.write_text("mpp: 0.4\nexports: [csv, coco]\ntile_size: 512\ncell_expansion_um: 2.5\nmodel: learned\n")
    settings = read_branch_settings(branch_yaml)
    assert settings == BranchSettings(
        mpp=0.4, exports=("csv", "coco"), tile_size=512, cell_expansion_um=2.5, model="learned", source=FILE
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("exports: [csv\n", f"{FILE} is not valid YAML (line 2): write 'key: value' lines, e.g. 'mpp: 0.5'"),
        (
            "exprots: [csv]\n",
            f"unknown key 'exprots' in {FILE}; known keys: mpp, exports, tile_size, cell_expansion_um, model, classifier, lymphocyte_rule, nuclear_channel, modality",
        ),
        (
            "exports: [csv, pdf]\n",
            f"{FILE}: exports names unknown format 'pdf'; known formats: " + ", ".join(f.setting_name for f in EXPORT_FORMATS),
        ),
        (
            "exports: {csv: true}\n",
            f"{FILE}: exports = {{'csv': True}} must be a list of format names, e.g. 'exports: [csv, coco]'; known: "
            + ", ".join(f.setting_name for f in EXPORT_FORMATS),
        ),
        ("tile_size: 64\n", f"{FILE}: tile_size = 64 must be a whole number of level-0 pixels from 128 to 8192"),
        ("tile_size: big\n", f"{FILE}: tile_size = 'big' must be a whole number of level-0 pixels from 128 to 8192"),
        ("cell_expansion_um: 25\n", f"{FILE}: cell_expansion_um = 25 must be a number of µm from 0 to 20"),
        (
            "cell_expansion_um: [1]\n",
            f"{FILE}, line 1: cell_expansion_um takes one value, not a list: write one value after 'cell_expansion_um:'",
        ),
        ("mpp: 0.5\nexports: [csv]\nmpp: 7\n", f"{FILE}, line 3: key 'mpp' is given twice (first on line 1): keep one"),
        ("mpp: &m 0.5\n", f"{FILE}, line 1: uses a YAML anchor or alias (&name, *name): write each value out in full"),
        (
            "exports: [[csv]]\n",
            f"{FILE}, line 1: nests lists or mappings deeper than any setting: write 'key: value' or 'key: [a, b]'",
        ),
        ("<<: {mpp: 0.5}\n", f"{FILE}, line 1: uses a YAML merge key (<<): write each key out in full"),
        ("model:\n  name: x.pt\n", f"{FILE}, line 2: model takes one value, not a mapping: write one value after 'model:'"),
        (
            "classifier: ..\n",
            f"{FILE}: classifier = '..' is a path, not a name: give 'default', 'rule', 'cnn', 'forest+cnn' or the file name of a classifier (.npz) "
            "in <user>/models/<branch>/ or the branch folder (no folders, no '..')",
        ),
        (
            "model: ../../bob/models/main/m.pt\n",
            f"{FILE}: model = '../../bob/models/main/m.pt' is a path, not a name: "
            "give the file name of a model in <user>/models/<branch>/ (no folders, no '..')",
        ),
        ("mpp: 0\n", f"{FILE}: mpp = 0 is not a µm/px value; write a number from 0.05 to 20.0, e.g. 'mpp: 0.5'"),
        ("model: 3\n", f"{FILE}: model = 3 must be a segmenter name ('default', 'classical', 'learned') or a model file name"),
        ("- csv\n", f"{FILE} must hold 'key: value' lines (e.g. 'mpp: 0.5'), not a list"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(branch_yaml, text, message):
    branch_yaml.write_text(text)
    with pytest.raises(SlideSettingsError) as caught:
        read_branch_settings(branch_yaml)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- through Dagster runs


def _materialized(result) -> dict:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_branch_exports_decide_what_a_run_writes(small_slide, user_files_root, dagster_instance):
    from wsi_assets.definitions import defs

    settings = user_files_root / "carol" / "inputs" / "exp" / "branch.yaml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("exports: [csv, coco]\ntile_size: 256\n")
    key, result = run_process_slide(dagster_instance, user_files_root, "carol", "exp", small_slide, "slide01")
    assert result.success
    folder = user_files_root / "carol" / "outputs" / "exp" / "slide01"
    assert (folder / "cells.csv").is_file() and (folder / "coco" / "annotations.json").is_file()
    assert not (folder / "cells.zarr.zip").exists() and not (folder / "summary.json").exists() and not (folder / "yolo").exists()
    metadata = _materialized(result)
    assert metadata["cells_zarr"]["reason"].value == "not requested in branch.yaml"
    assert metadata["cells_coco"]["format"].value == "coco" and metadata["cells_coco"]["rows"].value > 0
    assert metadata["cells_coco"]["settings"].value["tile_size"] == 256
    annotations = json.loads((folder / "coco" / "annotations.json").read_text())
    assert annotations["info"]["provenance"]["settings"]["exports"] == ["csv", "coco"]
    assert annotations["info"]["provenance"]["run_id"] == result.run_id

    settings.write_text("exports: [zarr, summary, yolo]\n")
    rerun = defs.resolve_job_def("export_cells").execute_in_process(instance=dagster_instance, partition_key=key)
    assert rerun.success
    assert {p.name for p in folder.iterdir()} >= {"cells.zarr.zip", "summary.json", "yolo"}
    assert not (folder / "cells.csv").exists() and not (folder / "coco").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["settings"]["exports"] == ["zarr", "summary", "yolo"] and summary["run_id"] == rerun.run_id
    assert _materialized(rerun)["cells_csv"]["written"].value is False

    settings.write_text("exprots: [csv]\n")
    failed = defs.resolve_job_def("export_cells").execute_in_process(
        instance=dagster_instance, partition_key=key, raise_on_error=False
    )
    assert not failed.success
    messages = [
        e.step_failure_data.user_failure_data.description
        for e in failed.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_failure_data.user_failure_data is not None
    ]
    assert messages and set(messages) == {
        "unknown key 'exprots' in carol/inputs/exp/branch.yaml; known keys: mpp, exports, tile_size, cell_expansion_um, model, classifier, lymphocyte_rule, nuclear_channel, modality"
    }
    assert (folder / "yolo").is_dir(), "a failed run leaves the published set as it was"


def test_core_export_names_are_the_registry_and_drift_is_refused():
    from wsi_assets.core.branch_settings import known_exports
    from wsi_assets.core.export_names import check_registry

    assert known_exports() == tuple(f.setting_name for f in EXPORT_FORMATS)
    declared = tuple((f.setting_name, f.default_on) for f in EXPORT_FORMATS)
    check_registry(declared)
    with pytest.raises(RuntimeError, match="core/export_names.py"):
        check_registry((*declared, ("parquet2", True)))
    with pytest.raises(RuntimeError, match="core/export_names.py"):
        check_registry(tuple((name, not on) if name == "coco" else (name, on) for name, on in declared))


def test_reading_branch_yaml_imports_no_domain_package(tmp_path):
    import subprocess
    import sys

    branch = tmp_path / "alice" / "inputs" / "main"
    branch.mkdir(parents=True)
    (branch / "branch.yaml").write_text("exports: [csv, yolo]\nlymphocyte_rule: {max_area_um2: 30}\n")
    code = (
        "import sys\nfrom pathlib import Path\nfrom wsi_assets.core.branch_settings import read_branch_settings\n"
        f"s = read_branch_settings(Path({str(branch / 'branch.yaml')!r}))\n"
        "assert s.exports == ('csv', 'yolo') and s.lymphocyte_rule['max_area_um2'] == 30.0, s\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('wsi_assets.')}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['core']", result.stdout
