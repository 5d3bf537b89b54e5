"""The Celery path for real: Redis, a GPU worker and a default worker, the daemon and the webserver
on PostgreSQL (deploy/celery/smoke.sh --kill), and the pure parts of the engine settings.

The smoke script asserts from run records and step logs (smoke_audit.py, kill_check.py); this test
runs it as CI does and checks it said so. Skipped where PostgreSQL or Redis is not available
(.ci/run starts both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from wsi_assets.queue.engines import EngineSettingError, celery_settings, chosen_engine
from wsi_assets.testing.dagster_services import REPO

SMOKE = REPO / "deploy" / "celery" / "smoke.sh"


def test_engine_defaults_to_in_process_and_refuses_unknown_names():
    assert chosen_engine({}) == "in_process"
    assert chosen_engine({"WSI_EXECUTOR": "celery"}) == "celery"
    with pytest.raises(EngineSettingError, match="WSI_EXECUTOR='spark' is not an engine; use one of: in_process, celery, k8s"):
        chosen_engine({"WSI_EXECUTOR": "spark"})


def test_celery_needs_a_broker_url():
    with pytest.raises(EngineSettingError, match="needs WSI_CELERY_BROKER"):
        celery_settings({"WSI_EXECUTOR": "celery"})
    with pytest.raises(EngineSettingError, match="is not a Redis or RabbitMQ URL"):
        celery_settings({"WSI_CELERY_BROKER": "localhost:6379"})
    settings = celery_settings({"WSI_CELERY_BROKER": "redis://127.0.0.1:56379/0"})
    assert settings.backend == "redis://127.0.0.1:56379/0"
    # A worker that reserved tasks ahead would lose them when killed.
    assert settings.app_config()["worker_disable_prefetch"] is True


def test_worker_command_refuses_a_missing_broker_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("WSI_CELERY_BROKER", "WSI_CELERY_BACKEND")}
    completed = subprocess.run(
        [sys.executable, "-m", "wsi_assets.cli.celery_worker", "--queue", "gpu", "--name", "gpu1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: WSI_EXECUTOR=celery needs WSI_CELERY_BROKER, e.g. redis://127.0.0.1:6379/0"


@pytest.mark.slow
def test_celery_smoke_script_with_a_gpu_worker_killed(tmp_path):
    if not all(os.environ.get(n) for n in ("WSI_PG_HOST", "WSI_PG_PORT", "WSI_PG_USER", "WSI_PG_PASSWORD")):
        pytest.skip("PostgreSQL not configured (set WSI_PG_*; .ci/run does)")
    if not os.environ.get("WSI_CELERY_BROKER") and not shutil.which("redis-server"):
        pytest.skip("no Redis (install redis-server or set WSI_CELERY_BROKER; .ci/run does)")
    env = {**os.environ, "WSI_PYTHON": sys.executable, "WSI_SMOKE_PORT": "3132"}
    completed = subprocess.run(["bash", str(SMOKE), "--kill"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    lines = output.splitlines()
    assert any("OK: 4 runs; segmentation on ['gpu1@" in line for line in lines), output[-3000:]
    figures = [json.loads(line) for line in lines if line.startswith("{")]
    routing, kill = figures
    assert routing["max_gpu_steps_at_once"] == 1 and len(routing["branches"]) == 2
    assert all(w.startswith("gpu") for w in routing["gpu_workers"]) and all(
        w.startswith("cpu") for w in routing["default_workers"]
    )
    assert kill["failed_after_s"] <= 60 and kill["next_run_on"].split("@")[0] != kill["killed"].split("@")[0]
    # stdout only: bash reports the killed worker's job on stderr after the script's last line.
    assert "stopped everything it started (exit 0)" in completed.stdout.splitlines()[-1]
    print("\n".join(line for line in lines if line.startswith("smoke:")))
