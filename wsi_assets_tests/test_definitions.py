"""The code location loads the way the webserver, the daemon and the CLI load it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={"DAGSTER_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All code locations passed validation" in completed.stdout + completed.stderr


def test_jobs_sensor_and_pool_are_defined():
    from wsi_assets.definitions import defs

    for job in ("process_slide", "tissue_mask_only", "export_cells"):
        assert defs.resolve_job_def(job).partitions_def.name == "slides"
    for job in ("process_stack", "stack_slice"):
        assert defs.resolve_job_def(job).partitions_def.name == "stacks"
    assert sorted(job.name for job in defs.resolve_sensor_def("upload_sensor").jobs) == ["process_slide", "process_stack"]
    segmentation = defs.resolve_assets_def("cell_segmentation")
    assert segmentation.op.pool == "gpu"
    assert segmentation.op.tags["wsi/device"] == "gpu"


def test_every_job_runs_its_steps_in_one_process_unless_an_engine_is_chosen():
    """A UI "Materialize" of a slide partition runs the implicit asset job: it must use the slide
    jobs' executor, not Dagster's default of one process (and ~10 s of imports) per step."""
    from dagster import in_process_executor

    from wsi_assets.definitions import defs

    jobs = [defs.resolve_implicit_global_asset_job_def(), *defs.resolve_all_job_defs()]
    assert {job.name: job.executor_def.name for job in jobs} == {job.name: in_process_executor.name for job in jobs}


def test_loading_the_definitions_does_not_import_torch():
    """The daemon, webserver, code servers and every `dagster` command load the definitions;
    torch costs ~3.5 CPU-s of a ~10 s load, and only runs that load a model need it."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, wsi_assets.definitions; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"imported by the definitions: {completed.stdout.strip()}"
