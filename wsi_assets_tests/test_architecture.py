"""The layout's rules that import-linter cannot state, and proof that its contracts can fail.

The layers and "Dagster only at the edge" are import-linter contracts (pyproject.toml,
[tool.importlinter]; scripts/test.sh runs `lint-imports`). Here: Dagster's private APIs in one
adapter, the numeric core running without Dagster, small modules.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wsi_assets"
PYPROJECT = PACKAGE.parent / "pyproject.toml"
MAY_IMPORT_DAGSTER_PRIVATE = ("queue/dagster_adapter.py",)
MAX_MODULE_LINES = 400


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at top level or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def offending_imports(package: Path, allowed: tuple[str, ...], wanted) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(allowed):
            continue
        found += [f"{relative} imports {module}" for module in imported_modules(path) if wanted(module)]
    return found


def test_private_dagster_apis_stay_behind_the_queue_adapter():
    assert offending_imports(PACKAGE, MAY_IMPORT_DAGSTER_PRIVATE, is_dagster_private) == []


def is_dagster_private(module: str) -> bool:
    return module.startswith("dagster._")


def test_the_private_api_check_catches_an_import_inside_a_function(tmp_path):
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "dagster_adapter.py").write_text("from dagster._core.launcher import DefaultRunLauncher\n")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "assets.py").write_text("import dagster\ndef f():\n    from dagster._serdes import serialize_value\n")
    assert offending_imports(tmp_path, MAY_IMPORT_DAGSTER_PRIVATE, is_dagster_private) == [
        "defs/assets.py imports dagster._serdes"
    ]


def test_the_import_contracts_catch_an_upward_import_and_dagster_below_the_edge(tmp_path):
    """pyproject's contracts over a copy of the package with two bad modules: both contracts break, naming them."""
    shutil.copytree(
        PACKAGE, tmp_path / "wsi_assets", ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.npz", "*.onnx", "*.json")
    )
    # Inside a function, as the imports that once hid a cycle were.
    (tmp_path / "wsi_assets" / "core" / "upward.py").write_text(
        "def f():\n    from wsi_assets.cells.classes import CLASS_NAMES\n"
    )
    (tmp_path / "wsi_assets" / "slides" / "orchestrated.py").write_text("import dagster_postgres\n")
    lint_imports = Path(sys.executable).with_name("lint-imports")
    # The working directory comes first on lint-imports' path, so the copy is what it reads.
    result = subprocess.run(
        [str(lint_imports), "--config", str(PYPROJECT), "--no-cache"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 2 broken." in result.stdout
    assert "wsi_assets.core.upward -> wsi_assets.cells.classes" in result.stdout
    assert "wsi_assets.slides.orchestrated -> dagster_postgres" in result.stdout


def test_numeric_core_runs_without_dagster():
    code = (
        "import sys, numpy as np\n"
        "from wsi_assets import segment_image\n"
        "import wsi_assets.segmentation.slide, wsi_assets.cells.exports, wsi_assets.quality.checks, wsi_assets.uploads.scan\n"
        "labels = segment_image(np.full((64, 64, 3), 240, np.uint8), mpp=0.5)\n"
        "assert labels.max() == 0\n"
        "assert not [m for m in sys.modules if m == 'dagster' or m.startswith(('dagster.', 'dagster_'))], 'dagster imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


def test_no_module_is_over_the_size_limit():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
