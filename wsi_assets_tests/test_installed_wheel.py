"""The wheel works on its own: built from the repo, installed into a new virtual environment and
run from a folder outside the checkout, it loads the definitions, writes and processes the demo
slide, loads the shipped model and builds the training defaults.

No download: the new environment gets the wheel alone (`--no-deps --no-index`) and sees the
dependencies already installed for these tests through a `.pth` line naming their site-packages.
A plain path line does not run that folder's own `.pth` files, so the editable install of the
checkout that lives there stays inactive; every check also asserts that `wsi_assets` is imported
from the new environment and that the checkout is not on `sys.path`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DEMO_KEY = "demo/main/synthetic_demo"


@dataclass
class Installed:
    venv: Path
    python: Path
    site_packages: Path
    wheel: Path
    work: Path  # the folder commands run in, outside the checkout
    dagster_home: Path
    user_files: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: nothing that points back at the checkout or the test venv."""
        dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST")
        env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith(("DAGSTER_", "WSI_"))}
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONNOUSERSITE="1",
            PYTHONUNBUFFERED="1",
            DAGSTER_HOME=str(self.dagster_home),
            WSI_USER_FILES=str(self.user_files),
        )
        env.update(extra)
        return env

    def run(self, args: list[str], timeout: float, **extra_env: str) -> subprocess.CompletedProcess:
        started = time.time()
        result = subprocess.run(
            [str(a) for a in args], cwd=self.work, env=self.env(**extra_env), capture_output=True, text=True, timeout=timeout
        )
        print(f"[{time.time() - started:5.1f} s] {' '.join(str(a) for a in args)[:120]}")
        assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    def python_json(self, code: str, timeout: float = 300, **extra_env: str) -> dict:
        """Run `code` in the new environment; its last stdout line is JSON."""
        result = self.run([self.python, "-c", code], timeout, **extra_env)
        return json.loads(result.stdout.strip().splitlines()[-1])


def inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def _site_packages(python: Path | str) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def build_wheel(dist: Path, tmp: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ folder."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "wsi_assets", source / "wsi_assets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    command = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps", "-w", str(dist)]
    if importlib.util.find_spec("setuptools") is not None:
        # Offline: build with the setuptools already installed here.
        command += ["--no-build-isolation", "--no-index"]
    # else pip fetches setuptools into an isolated build environment (needs an index)
    subprocess.run(command + [str(source)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = dist.glob("wsi_assets-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("installed_wheel")
    started = time.time()
    wheel = build_wheel(tmp / "dist", tmp)
    print(f"\n[{time.time() - started:5.1f} s] built {wheel.name}")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    site_packages = _site_packages(python)
    dependencies = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / "zz_test_dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    print(f"[{time.time() - started:5.1f} s] installed into {venv}")

    work = tmp / "work"
    for folder in (work, tmp / "dagster_home", tmp / "user_files"):
        folder.mkdir()
    return Installed(venv, python, site_packages, wheel, work, tmp / "dagster_home", tmp / "user_files")


def test_the_wheel_ships_the_model_and_the_commands(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "wsi_assets/models/nuclei_unet_v4.pt" in names
    assert "wsi_assets/models/nuclei_unet_v4.model_card.json" in names
    assert not [n for n in names if n.startswith("wsi_assets_tests")]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    assert "wsi-assets-demo = wsi_assets.cli.demo:main" in text
    assert "wsi-assets-submit = wsi_assets.cli.submit:main" in text
    for command in ("wsi-assets-demo", "wsi-assets-submit"):
        assert (installed.venv / "bin" / command).exists()


def test_the_package_comes_from_the_new_environment(installed):
    found = installed.python_json(
        "import importlib.util, json, sys, wsi_assets; "
        "print(json.dumps({'file': wsi_assets.__file__, 'path': sys.path, "
        "'tests': importlib.util.find_spec('wsi_assets_tests') is not None}))"
    )
    assert inside(found["file"], installed.site_packages), found["file"]
    assert str(REPO) not in found["path"] and "" not in found["path"][1:], found["path"]
    assert not found["tests"], "the checkout is importable from the new environment"


def test_definitions_validate(installed, demo_run):
    result = installed.run([installed.python, "-m", "dagster", "definitions", "validate", "-m", "wsi_assets.definitions"], 600)
    assert "Validation successful" in result.stdout + result.stderr, result.stdout + result.stderr
    assert inside(demo_run["file"], installed.site_packages), demo_run["file"]
    assert {"process_slide", "tissue_mask_only", "export_cells"} <= set(demo_run["jobs"])


@pytest.fixture(scope="module")
def demo_slide(installed) -> Path:
    result = installed.run([installed.venv / "bin" / "wsi-assets-demo", "--user-files", installed.user_files], 600)
    slide = installed.user_files / "demo" / "inputs" / "main" / "synthetic_demo.svs"
    assert f"demo slide ready: {slide}" in result.stdout, result.stdout
    return slide


def test_demo_command_writes_the_demo_slide(installed, demo_slide):
    assert demo_slide.stat().st_size > 1_000_000


PROCESS_DEMO = (
    """
import json, os
from dagster import DagsterInstance
import wsi_assets
from wsi_assets.definitions import defs
key = "%s"
with DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("slides", [key])
    result = defs.resolve_job_def("process_slide").execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
    failures = [str(e.event_specific_data.error.message) for e in result.all_events if e.is_failure and e.event_specific_data and getattr(e.event_specific_data, "error", None)]
jobs = sorted(j.name for j in defs.resolve_all_job_defs())
print(json.dumps({"success": result.success, "failures": failures, "file": wsi_assets.__file__, "jobs": jobs}))
"""
    % DEMO_KEY
)


@pytest.fixture(scope="module")
def demo_run(installed, demo_slide) -> dict:
    """process_slide on the demo slide in the new environment; the same process lists the jobs
    test_definitions_validate checks (a second fresh import of the definitions cost ~10 s)."""
    started = time.time()
    result = installed.python_json(PROCESS_DEMO, timeout=1800)
    print(f"process_slide on the demo slide: {time.time() - started:.0f} s")
    return result


def test_process_slide_runs_on_the_demo_slide(installed, demo_run):
    result = demo_run
    assert result["success"], result["failures"]
    assert inside(result["file"], installed.site_packages), result["file"]
    outputs = installed.user_files / "demo" / "outputs" / "main" / "synthetic_demo"
    with open(outputs / "cells.csv", newline="") as table:
        rows = sum(1 for _ in csv.reader(table)) - 1
    assert rows > 1000, rows
    assert (outputs / "cells.zarr.zip").exists()


def test_the_shipped_model_loads(installed):
    found = installed.python_json(
        "import json; from wsi_assets.segmentation.registry import get_segmenter; "
        "s = get_segmenter('learned'); "
        "print(json.dumps({'path': str(s.path.resolve()), 'name': s.name, 'version': s.version, 'mpp': s.mpp}))"
    )
    assert inside(found["path"], installed.site_packages), found["path"]
    assert Path(found["path"]).name == "nuclei_unet_v4.pt"
    assert found["mpp"] == 0.5


TRAINING_DEFAULTS = """
import json, os
from wsi_assets.training.train import TrainConfig
with_shared = TrainConfig()
os.environ.pop("WSI_SHARED_DATA")
os.environ.pop("DAGSTER_HOME")
without = TrainConfig()
print(json.dumps({"out": str(with_shared.out), "data": str(with_shared.data),
                  "out_without_home": str(without.out), "data_without_shared": str(without.data)}))
"""


def test_training_defaults_outside_the_checkout(installed, tmp_path):
    shared = tmp_path / "lab_shared_data"
    found = installed.python_json(TRAINING_DEFAULTS, WSI_SHARED_DATA=str(shared))
    assert Path(found["data"]) == shared.resolve() / "nuclei_train"
    assert Path(found["out"]) == installed.dagster_home.resolve() / "models" / "nuclei_unet.pt"
    for key in ("out", "out_without_home", "data_without_shared"):
        path = Path(found[key])
        assert not inside(path, installed.venv), f"{key} = {path} lies inside the environment"
        assert not inside(path, REPO), f"{key} = {path} lies inside the checkout"
    assert Path(found["out_without_home"]) == Path.home().resolve() / ".wsi-assets" / "models" / "nuclei_unet.pt"
