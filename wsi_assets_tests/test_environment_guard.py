"""The suite's own guard (conftest.py): a test or fixture that leaves os.environ changed fails.

Dagster runs read $WSI_USER_FILES and the PostgreSQL settings from the environment, so a value
left behind by one test silently changes what later tests run against.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY_TESTS = """
import os
import pytest
from conftest import fixture_env


@pytest.fixture(scope="session")
def restored_session_env():
    with fixture_env(WSI_GUARD_SESSION="kept while the fixture lives"):
        yield


@pytest.fixture(scope="module")
def leaky_module_fixture():
    os.environ["WSI_GUARD_MODULE_LEAK"] = "1"
    yield


def test_sets_environ_directly():
    os.environ["WSI_GUARD_TEST_LEAK"] = "1"


def test_uses_monkeypatch(monkeypatch):
    monkeypatch.setenv("WSI_GUARD_MONKEYPATCHED", "1")
    monkeypatch.delenv("WSI_GUARD_PRESET")


def test_uses_a_restoring_session_fixture(restored_session_env):
    assert os.environ["WSI_GUARD_SESSION"] == "kept while the fixture lives"


def test_uses_a_leaky_module_fixture(leaky_module_fixture):
    pass


def test_later_test_is_not_blamed(restored_session_env):
    assert os.environ["WSI_GUARD_TEST_LEAK"] == "1"  # still leaked, but already reported once
"""


def test_leaked_environment_variables_fail_the_test_that_leaked_them(tmp_path):
    shutil.copyfile(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    env = {**os.environ, "WSI_GUARD_PRESET": "present before the session"}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rE", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = completed.stdout + completed.stderr
    assert completed.returncode == 1, out
    errors = sorted(line.split("::")[1].split(" ")[0] for line in out.splitlines() if line.startswith("ERROR "))
    assert errors == ["test_sets_environ_directly", "test_uses_a_leaky_module_fixture"], out
    assert "WSI_GUARD_TEST_LEAK: None -> '1'" in out and "WSI_GUARD_MODULE_LEAK: None -> '1'" in out, out
    assert "5 passed, 2 errors" in out, out
