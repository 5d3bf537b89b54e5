"""Mutation testing with mutmut over core/, results/ and queue/tags.py, on a copy of the tree.

    pip install "mutmut>=3.8"
    nice -n 10 python benchmarks/mutation_testing.py                          # every default target
    nice -n 10 python benchmarks/mutation_testing.py --target queue --target results --max-mutants 60

A mutant that survives is a change to the code that no selected test notices. mutmut writes
each mutant into a copy of the package, never into this checkout: the tree, its tests and the
pyproject.toml section mutmut needs go to a temporary folder first, so tests running in this
checkout at the same time never import a mutant. Each target has its own fast test selection
(`-m "not slow"`; mutmut adds `-x` and runs, per mutant, only the selected tests that call the
mutated function).

--max-mutants N runs an evenly spread sample of N mutants (all files and functions get some)
rather than all of them: a first mutmut pass only generates the mutants and records which tests
call what, a second runs the sample. Writes benchmarks/output/mutation_report.json (score,
every mutant's status, survivors with file:line and the mutation) and prints a summary.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "benchmarks" / "output" / "mutation_report.json"

# Each target: the files mutmut mutates (globs), and the fast tests that exercise them. The
# result-set tests that run a Dagster job take 20-70 s each (8 min for the file), too long to run
# per mutant, so results/ gets the ones that build sets by hand; a mutant only they would kill
# shows as a survivor here.
RESULTS_FAST_TESTS = [
    "wsi_assets_tests/test_result_sets.py::test_refusal_of_a_link_into_another_users_folder_does_not_name_it",
    "wsi_assets_tests/test_result_sets.py::test_identity_check_catches_a_same_size_replacement",
    "wsi_assets_tests/test_result_sets.py::test_cells_without_any_export_are_not_published",
    "wsi_assets_tests/test_result_sets.py::test_a_new_set_carries_files_but_never_links",
    "wsi_assets_tests/test_export_summaries.py::test_class_counts_reach_summary_and_workbook",
    "wsi_assets_tests/test_export_summaries.py::test_workbook_has_a_sheet_of_slides_and_one_of_batches_without_nameless_rows",
    "wsi_assets_tests/test_report_html.py::test_a_set_without_cells_replacing_one_with_cells_warns_what_left",
    "wsi_assets_tests/test_report_html.py::test_no_warning_when_no_cells_are_dropped",
]
TARGETS = {
    "queue": (["wsi_assets/queue/tags.py"], ["wsi_assets_tests/test_queue_units.py"]),
    "results": (["wsi_assets/results/*"], RESULTS_FAST_TESTS),
    "core": (
        ["wsi_assets/core/*"],
        [
            "wsi_assets_tests/test_slide_core.py",
            "wsi_assets_tests/test_settings_yaml.py",
            "wsi_assets_tests/test_progress.py",
            "wsi_assets_tests/test_markup.py",
            *RESULTS_FAST_TESTS,
        ],
    ),
}
# mutmut's exit codes per mutant (mutmut/stats.py); anything else counts as suspicious.
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    None: "not checked",
}
# What the repository's tests read beside the package (wsi_assets.testing.dagster_services.REPO is the copy's root).
ALSO_COPY = ["wsi_assets_tests", "dagster.yaml"]


class MutationSetupError(RuntimeError):
    """The copy could not be prepared or mutmut could not run on it."""


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare_copy(work: Path, mutate: list[str], tests: list[str]) -> Path:
    """A copy of the package, its tests and pyproject.toml with a [tool.mutmut] section; returns its root."""
    root = work / "repo"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(REPO / "wsi_assets", root / "wsi_assets", ignore=ignore)
    shutil.copytree(REPO / "wsi_assets_tests", root / "wsi_assets_tests", ignore=ignore)
    shutil.copy2(REPO / "dagster.yaml", root / "dagster.yaml")
    # The tests find the shared test data beside the repository (conftest.SHARED_DATA).
    if (REPO.parent / "shared").exists():
        (root / "shared").symlink_to(REPO.parent / "shared")
    pyproject = (REPO / "pyproject.toml").read_text()
    if "[tool.mutmut]" in pyproject:
        raise MutationSetupError("pyproject.toml already has a [tool.mutmut] section: this script writes its own into the copy")
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["wsi_assets/"]\n'
        f"only_mutate = {_toml_list(mutate)}\n"
        f"also_copy = {_toml_list(ALSO_COPY)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-q", "--durations=0"]\n'
    )
    (root / "pyproject.toml").write_text(pyproject)
    # The suite fails a test that leaves os.environ changed; mutmut sets MUTANT_UNDER_TEST itself.
    conftest = root / "wsi_assets_tests" / "conftest.py"
    text = conftest.read_text()
    if "_ENV_IGNORED" not in text:
        raise MutationSetupError("wsi_assets_tests/conftest.py has no _ENV_IGNORED set to add MUTANT_UNDER_TEST to")
    conftest.write_text(
        text + '\n_ENV_IGNORED = _ENV_IGNORED | {"MUTANT_UNDER_TEST"}  # added by benchmarks/mutation_testing.py\n'
    )
    return root


def _mutmut(root: Path, args: list[str], max_children: int, log, timeout: float) -> int:
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *args]
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    # Its own process group: mutmut forks workers, and a timeout must stop them too.
    process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.write(f"\n(stopped after {timeout:.0f} s)\n")
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return -1


def read_results(root: Path) -> dict[str, tuple[str, int | None]]:
    """Every mutant's key -> (source file relative to the copy, exit code or None), from mutmut's .meta files."""
    found = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(root / "mutants").as_posix().removesuffix(".meta")
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[key] = (source, code)
    return found


def spread_sample(keys: list[str], count: int) -> list[str]:
    """`count` keys evenly spread over the ordered list (so every file and most functions get some)."""
    if count >= len(keys):
        return list(keys)
    step = len(keys) / count
    return [keys[int(i * step)] for i in range(count)]


def _mutant_order(key: str) -> tuple[str, int]:
    base, _, number = key.rpartition("__mutmut_")
    return base, int(number) if number.isdigit() else 0


def _function_of(key: str) -> str:
    """The function (or Class.method) a mutant key names: module.x_func__mutmut_3, module.xǁClassǁmethod__mutmut_3."""
    mangled = key.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    if mangled.startswith("xǁ"):
        return ".".join(mangled[2:].split("ǁ"))
    return mangled.removeprefix("x_")


def _function_span(source: str, qualified: str) -> tuple[int, int] | None:
    parts = qualified.split(".")
    body = ast.parse(source).body
    for depth, name in enumerate(parts):
        node = next(
            (n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name), None
        )
        if node is None:
            return None
        if depth == len(parts) - 1:
            return node.lineno, node.end_lineno or node.lineno
        body = node.body
    return None


def describe_mutant(root: Path, key: str, source_file: str) -> dict:
    """file:line, the original line and the mutated one, from `mutmut show` and the unmutated source."""
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=root, capture_output=True, text=True).stdout
    removed = [line[1:] for line in shown.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in shown.splitlines() if line.startswith("+") and not line.startswith("+++")]
    source = (root / source_file).read_text()  # the copy as it was mutated: the checkout may have moved on
    line = None
    span = _function_span(source, _function_of(key))
    if removed and span:
        lines = source.splitlines()
        wanted = removed[0].strip()
        line = next((n for n in range(span[0], span[1] + 1) if lines[n - 1].strip() == wanted), span[0])
    return {
        "mutant": key,
        "file": source_file,
        "line": line,
        "function": _function_of(key),
        "old": "\n".join(r.strip() for r in removed),
        "new": "\n".join(a.strip() for a in added),
    }


def imported_from(root: Path) -> str:
    """Which wsi_assets the mutant runs import (must be the copy's, never this checkout's)."""
    out = subprocess.run(
        [sys.executable, "-c", "import wsi_assets; print(wsi_assets.__file__)"],
        cwd=root / "mutants",
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def run_target(name: str, max_mutants: int | None, max_children: int, timeout: float, keep: bool) -> dict:
    mutate, tests = TARGETS[name]
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    started = time.monotonic()
    log_path = OUTPUT.parent / f"mutation_{name}.log"
    try:
        root = prepare_copy(work, mutate, tests)
        with open(log_path, "w") as log:
            if max_mutants is None:
                code = _mutmut(root, [], max_children, log, timeout)
                generated = None
            else:
                # Pass 1 generates the mutants and records which tests call which function, then
                # stops at mutmut's "nothing matches" check; pass 2 runs the sample.
                _mutmut(root, ["no-such-mutant-generate-only"], max_children, log, timeout)
                keys = sorted(read_results(root), key=_mutant_order)
                if not keys:
                    raise MutationSetupError(f"mutmut generated no mutants for {name}; see {log_path}")
                generated = len(keys)
                sample = spread_sample(keys, max_mutants)
                code = _mutmut(root, sample, max_children, log, max(1.0, timeout - (time.monotonic() - started)))
        results = read_results(root)
        if max_mutants is not None:
            results = {k: results[k] for k in sample}
        where = imported_from(root)
        if not where.startswith(str(root)):
            raise MutationSetupError(f"the mutant runs imported {where}, not the copy under {root}")
        statuses = {key: STATUS.get(code, "suspicious") for key, (_, code) in results.items()}
        if statuses and all(status == "not checked" for status in statuses.values()):
            raise MutationSetupError(f"mutmut checked no mutant (exit code {code}); its output: {log_path}")
        survivors = [describe_mutant(root, key, results[key][0]) for key, status in statuses.items() if status == "survived"]
        counts = {status: list(statuses.values()).count(status) for status in sorted(set(statuses.values()))}
        tested = counts.get("killed", 0) + counts.get("survived", 0) + counts.get("timeout", 0)
        return {
            "target": name,
            "mutated": mutate,
            "tests": tests,
            "pytest_args": ["-m", "not slow", "-x"],
            "mutants": len(statuses),
            "generated": generated if generated is not None else len(statuses),
            "counts": counts,
            "score": round((counts.get("killed", 0) + counts.get("timeout", 0)) / tested, 4) if tested else None,
            "mutmut_exit_code": code,
            "seconds": round(time.monotonic() - started, 1),
            "imported_from": where,
            "log": str(log_path.relative_to(REPO)),
            "survivors": survivors,
            "statuses": statuses,
        }
    finally:
        if keep:
            print(f"kept the copy: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all of them")
    parser.add_argument("--max-mutants", type=int, help="per target: run an evenly spread sample of this many")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per target before mutmut is stopped")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (to look at mutants/)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"the JSON report (default {OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print('mutmut is not installed: pip install "mutmut>=3.8"', file=sys.stderr)
        return 2
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    reports = []
    for name in args.target or sorted(TARGETS):
        try:
            reports.append(run_target(name, args.max_mutants, args.max_children, args.timeout, args.keep))
        except MutationSetupError as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 1
    killed = sum(r["counts"].get("killed", 0) + r["counts"].get("timeout", 0) for r in reports)
    tested = killed + sum(r["counts"].get("survived", 0) for r in reports)
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/mutation_testing.py", *(argv if argv is not None else sys.argv[1:])]),
        "mutmut": _mutmut_version(),
        "score": round(killed / tested, 4) if tested else None,
        "killed": killed,
        "tested": tested,
        "targets": reports,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for r in reports:
        score = "n/a" if r["score"] is None else f"{r['score']:.1%}"
        print(
            f"{r['target']:8s} {r['mutants']:4d} of {r['generated']} mutants  score {score}  {r['counts']}  ({r['seconds']:.0f} s)"
        )
        for s in r["survivors"]:
            print(f"    survived  {s['file']}:{s['line']}  {s['old']!r} -> {s['new']!r}")
    total = "n/a" if report["score"] is None else f"{report['score']:.1%}"
    print(f"mutation score {total} ({killed} of {tested} killed); report: {args.output}")
    return 0


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    sys.exit(main())
