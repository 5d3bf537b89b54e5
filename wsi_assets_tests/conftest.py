"""Shared fixtures: Dagster is slow to import and slides take seconds to write, so both are made once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CMU_SLIDE = SHARED_DATA / "slides" / "CMU-1-Small-Region.svs"

# Synthetic slide used end to end: several tiles at the test's tile size, a few thousand nuclei.
PIPELINE_SLIDE = dict(width=6_000, height=4_800, mpp=0.25, seed=11)
PIPELINE_TILE_CORE_PX = 512  # small tiles: many borders to get wrong


@pytest.fixture(scope="session")
def user_files_root(tmp_path_factory) -> Path:
    """The user-files root every Dagster run in the session sees ($WSI_USER_FILES)."""
    root = tmp_path_factory.mktemp("user_files")
    previous = os.environ.get("WSI_USER_FILES")
    os.environ["WSI_USER_FILES"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("WSI_USER_FILES", None)
    else:
        os.environ["WSI_USER_FILES"] = previous


@pytest.fixture(scope="session")
def dagster_instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory) -> Path:
    """A small but real slide file (OpenSlide opens it as Aperio) for upload tests."""
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    path = tmp_path_factory.mktemp("slides") / "small.svs"
    write_synthetic_slide(path, SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=1))
    return path


@pytest.fixture(scope="session")
def pipeline_spec():
    from wsi_assets.slides.synthetic import SyntheticSlideSpec

    return SyntheticSlideSpec(**PIPELINE_SLIDE)


def run_process_slide(instance, root: Path, user: str, branch: str, source: Path, stem: str, run_config: dict | None = None):
    """Upload `source` as <user>/<branch>/<stem> and run the process_slide job on it."""
    from wsi_assets.definitions import defs

    folder = root / user / "inputs" / branch
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}{source.suffix}"
    if not target.exists():
        shutil.copyfile(source, target)
    key = f"{user}/{branch}/{stem}"
    instance.add_dynamic_partitions("slides", [key])
    result = defs.resolve_job_def("process_slide").execute_in_process(
        instance=instance, partition_key=key, run_config=run_config or {}, raise_on_error=False
    )
    return key, result


@pytest.fixture(scope="session")
def processed_synthetic(tmp_path_factory, user_files_root, dagster_instance, pipeline_spec):
    """process_slide run once on the synthetic pipeline slide; tests read its outputs."""
    from wsi_assets.slides.synthetic import write_synthetic_slide

    source = tmp_path_factory.mktemp("pipeline") / "pipeline.svs"
    write_synthetic_slide(source, pipeline_spec)
    run_config = {"resources": {"segmentation": {"config": {"tile_core_px": PIPELINE_TILE_CORE_PX}}}}
    key, result = run_process_slide(dagster_instance, user_files_root, "alice", "main", source, "synthetic01", run_config)
    assert result.success, "process_slide failed on the synthetic slide"
    return key, result, user_files_root / "alice" / "outputs" / "main" / "synthetic01"


def require_shared_slide() -> Path:
    if not CMU_SLIDE.exists():
        pytest.skip(f"{CMU_SLIDE} is not here (../shared is absent on a fresh clone)")
    return CMU_SLIDE
