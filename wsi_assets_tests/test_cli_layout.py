"""Every command line lives in wsi_assets/cli/: `python -m wsi_assets.cli.<name>`, and a console script for each."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "wsi_assets"


def console_scripts() -> dict[str, str]:
    """[project.scripts] of pyproject.toml: command name -> "module:function"."""
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)", text, re.M | re.S)
    assert section, "pyproject.toml has no [project.scripts]"
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.:]+)"', section.group(1), re.M))


def command_line_parts(path: Path) -> list[str]:
    """An `if __name__ == "__main__":` block, an ArgumentParser, or the file being a __main__.py."""
    found = ["is a __main__.py"] if path.name == "__main__.py" else []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "__name__":
            found.append(f"line {node.lineno}: if __name__ == ...")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "ArgumentParser":
            found.append(f"line {node.lineno}: ArgumentParser")
    return found


def test_no_command_line_outside_cli():
    outside = {
        path.relative_to(PACKAGE).as_posix(): parts
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith("cli/") and (parts := command_line_parts(path))
    }
    assert outside == {}, "move these command lines into wsi_assets/cli/ (a module per command)"


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_each_console_script_is_a_cli_module_that_also_runs_with_python_m(name, monkeypatch, capsys):
    module_name, function = console_scripts()[name].split(":")
    assert module_name.startswith("wsi_assets.cli.") and function == "main"
    module = importlib.import_module(module_name)
    assert any("line" in part and "__name__" in part for part in command_line_parts(Path(module.__file__))), (
        f'{module_name} has no `if __name__ == "__main__"` block: `python -m {module_name}` would do nothing'
    )
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
