"""Shared fixtures: Dagster is slow to import and slides take seconds to write, so both are made once."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2  # noqa: F401 - OpenCV sets LD_LIBRARY_PATH when first imported: part of the baseline, not a test's leak
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CMU_SLIDE = SHARED_DATA / "slides" / "CMU-1-Small-Region.svs"

# Synthetic slide used end to end: several tiles at the test's tile size, a few thousand nuclei.
PIPELINE_SLIDE = dict(width=6_000, height=4_800, mpp=0.25, seed=11)
PIPELINE_TILE_CORE_PX = 512  # small tiles: many borders to get wrong


# --------------------------------------------------------------- environment variables
# A test that changes os.environ must leave it as it found it: later tests (and the Dagster runs
# they start) read it. Tests use the `monkeypatch` fixture; session and module fixtures use
# `fixture_env`, which restores the variables when the fixture ends. After every test's teardown
# the environment is compared with the one the session started with plus what the still-active
# fixtures set through `fixture_env`; any other difference fails that test's teardown.

_ACTIVE_FIXTURE_ENV: list[dict[str, str]] = []  # one dict per active fixture_env, outermost first
_ENV_BASELINE: dict[str, str] | None = None
# Not settings a test chose: pytest sets and removes its own around each phase, and torch pins its
# compile-cache folder in os.environ the first time it needs it, for the rest of the process;
# scikit-learn sets its OpenMP switches when first imported (training the cell classifier).
_ENV_IGNORED = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}


@contextmanager
def fixture_env(**values: str) -> Iterator[None]:
    """Set environment variables for as long as a session or module fixture lives, then restore them."""
    values = {name: str(value) for name, value in values.items()}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        _ACTIVE_FIXTURE_ENV.append(values)
        try:
            yield
        finally:
            _ACTIVE_FIXTURE_ENV[:] = [active for active in _ACTIVE_FIXTURE_ENV if active is not values]


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _ENV_IGNORED}


def _expected_environment() -> dict[str, str]:
    expected = dict(_ENV_BASELINE or {})
    for values in _ACTIVE_FIXTURE_ENV:
        expected.update(values)
    return expected


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    global _ENV_BASELINE
    if _ENV_BASELINE is None:
        _ENV_BASELINE = _environment()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Fail the test whose teardown leaves os.environ changed (by the test or a fixture that has ended)."""
    global _ENV_BASELINE
    result = yield
    if _ENV_BASELINE is None:
        return result
    expected, current = _expected_environment(), _environment()
    if current != expected:
        changed = sorted(k for k in expected.keys() | current.keys() if expected.get(k) != current.get(k))
        # Take the leak as the new normal, so it fails this test only and not every later one.
        active = {k for values in _ACTIVE_FIXTURE_ENV for k in values}
        previous = _ENV_BASELINE
        _ENV_BASELINE = {k: v for k, v in current.items() if k not in active}
        _ENV_BASELINE.update({k: previous[k] for k in active if k in previous})
        pytest.fail(
            f"os.environ was changed and not restored by {item.nodeid} or a fixture it used: "
            + ", ".join(f"{k}: {expected.get(k)!r} -> {current.get(k)!r}" for k in changed)
            + ". Use the monkeypatch fixture in tests and wsi_assets_tests.conftest.fixture_env in session or module fixtures.",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def user_files_root(tmp_path_factory) -> Iterator[Path]:
    """The user-files root every Dagster run in the session sees ($WSI_USER_FILES)."""
    root = tmp_path_factory.mktemp("user_files")
    with fixture_env(WSI_USER_FILES=str(root)):
        yield root


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


@pytest.fixture(scope="session")
def processed_cmu(user_files_root, dagster_instance):
    """process_slide run once on CMU-1-Small-Region (../shared; skipped where absent); tests read its outputs.

    Returns (key, result, output folder, the slide's bytes before the run).
    """
    slide = require_shared_slide()
    before = slide.read_bytes()
    key, result = run_process_slide(dagster_instance, user_files_root, "alice", "real", slide, "CMU-1-Small-Region")
    return key, result, user_files_root / "alice" / "outputs" / "real" / "CMU-1-Small-Region", before


def require_shared_slide() -> Path:
    if not CMU_SLIDE.exists():
        pytest.skip(f"{CMU_SLIDE} is not here (../shared is absent on a fresh clone)")
    return CMU_SLIDE
