"""The layout's rules: Dagster only at the edge, its private APIs in one adapter, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wsi_assets"
# The orchestration layer: the definitions Dagster loads, and the commands that talk to an instance.
MAY_IMPORT_DAGSTER = ("definitions.py", "defs/", "cli/", "queue/dagster_adapter.py")
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


def is_dagster(module: str) -> bool:
    return module == "dagster" or module.startswith(("dagster.", "dagster_"))


def offending_imports(package: Path, allowed: tuple[str, ...], wanted) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(allowed):
            continue
        found += [f"{relative} imports {module}" for module in imported_modules(path) if wanted(module)]
    return found


def test_dagster_is_imported_only_in_the_orchestration_layer():
    assert offending_imports(PACKAGE, MAY_IMPORT_DAGSTER, is_dagster) == []


def test_private_dagster_apis_stay_behind_the_queue_adapter():
    assert offending_imports(PACKAGE, MAY_IMPORT_DAGSTER_PRIVATE, lambda m: m.startswith("dagster._")) == []


def test_the_import_check_catches_a_dagster_import(tmp_path):
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "assets.py").write_text("import dagster\n")
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "reader.py").write_text("def f():\n    from dagster import asset\n")
    (tmp_path / "core.py").write_text("import dagster_postgres\nfrom dagster._core import x\n")
    assert offending_imports(tmp_path, MAY_IMPORT_DAGSTER, is_dagster) == [
        "core.py imports dagster_postgres",
        "core.py imports dagster._core",
        "slides/reader.py imports dagster",
    ]


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
