"""Real Dagster services for integration tests and benchmarks: an instance folder, the daemon, the webserver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from wsi_assets.cli.graphql_launch import LAUNCH_RUN  # the launch `submit` sends, as the UI does
from wsi_assets.queue.webserver_view import graphql_answer

# The checkout this package is installed from (editable): the services run there, on its workspace.yaml.
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(dagster_home: Path, user_files: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update({"DAGSTER_HOME": str(dagster_home), "WSI_USER_FILES": str(user_files), "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


@contextmanager
def running(command: list[str], env: dict, log: Path):
    """Run a service in its own process group; stop it (and its code servers) afterwards."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def daemon_command() -> list[str]:
    return [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]


def webserver_command(port: int) -> list[str]:
    return [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]


def wait_for_http(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_until(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s")


def launch_over_graphql(port: int, location: str, job: str, partition_key: str, asset_names: list[str] | None = None) -> str:
    """Launch a run for one partition the way the UI does; returns the run id."""
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "pipelineName": job}
    if asset_names is not None:
        selector.update({"assetSelection": [{"path": [name]} for name in asset_names], "assetCheckSelection": []})
    params = {
        "selector": selector,
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition_key}]},
    }
    answer = graphql_answer(f"http://127.0.0.1:{port}", LAUNCH_RUN, {"params": params}, timeout=120)
    result = answer["data"]["launchPipelineExecution"]  # type: ignore[index]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch of {job} for {partition_key} failed: {result}")
    return result["run"]["runId"]
