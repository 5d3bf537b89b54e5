"""Per-run overhead of the Celery path against the in-process executor, with real services.

    python benchmarks/celery_overhead.py [--runs 3]

Needs PostgreSQL (WSI_PG_*) and a Redis broker (WSI_CELERY_BROKER): `eval "$(bash .ci/start_postgres.sh)";
eval "$(bash .ci/start_redis.sh)"`. For each engine: a fresh database, the daemon (and for Celery a GPU
and a default worker), `--runs` small synthetic slides uploaded to one branch (so runs are serial),
and the median run time from run start to run end in the run records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from wsi_assets.testing.dagster_services import daemon_command, running, service_env, wait_until

REPO = Path(__file__).resolve().parents[1]


def measure(engine: str, runs: int, slide: Path, work: Path) -> list[float]:
    import psycopg2
    from dagster import DagsterInstance, DagsterRunStatus

    pg = {n: os.environ[n] for n in ("WSI_PG_HOST", "WSI_PG_PORT", "WSI_PG_USER", "WSI_PG_PASSWORD")}
    database = f"wsi_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(
        host=pg["WSI_PG_HOST"], port=pg["WSI_PG_PORT"], user=pg["WSI_PG_USER"], password=pg["WSI_PG_PASSWORD"], dbname="postgres"
    )
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    home, user_files = work / engine / "home", work / engine / "user_files"
    home.mkdir(parents=True)
    user_files.mkdir()
    shutil.copyfile(REPO / "deploy" / "celery" / "dagster.yaml", home / "dagster.yaml")
    extra = {**pg, "WSI_PG_DB": database, "WSI_EXECUTOR": engine, "PYTHONPATH": str(REPO)}
    env = service_env(home, user_files, extra)
    os.environ.update(extra)
    instance = DagsterInstance.from_config(str(home))
    python = sys.executable
    services = [running(daemon_command(), env, home / "daemon.log")]
    if engine == "celery":
        services += [
            running([python, "-m", "wsi_assets.cli.celery_worker", "--queue", "gpu", "--name", "gpu1"], env, home / "gpu.log"),
            running(
                [python, "-m", "wsi_assets.cli.celery_worker", "--queue", "dagster", "--name", "cpu1", "--concurrency", "2"],
                env,
                home / "cpu.log",
            ),
        ]
    try:
        for service in services:
            service.__enter__()
        time.sleep(15)  # services up (workers import torch and the definitions)
        folder = user_files / "bench" / "inputs" / "main"
        folder.mkdir(parents=True)
        for i in range(runs):
            shutil.copyfile(slide, folder / f".s{i}.part")
            (folder / f".s{i}.part").rename(folder / f"s{i}.svs")
        done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
        wait_until(
            lambda: (
                len(instance.get_run_records()) == runs and all(r.dagster_run.status in done for r in instance.get_run_records())
            ),
            timeout=900,
            interval=2,
            what=f"{runs} {engine} runs",
        )
        records = instance.get_run_records()
        assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records), f"{engine}: a run failed"
        return sorted(r.end_time - r.start_time for r in records)
    finally:
        for service in reversed(services):
            service.__exit__(None, None, None)
        instance.dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        slide = work / "tiny.svs"
        write_synthetic_slide(slide, SyntheticSlideSpec(width=1500, height=1200, mpp=0.25, seed=5))
        result = {}
        for engine in ("in_process", "celery"):
            seconds = measure(engine, args.runs, slide, work)
            result[engine] = {"run_seconds": [round(s, 1) for s in seconds], "median_s": round(statistics.median(seconds), 1)}
            print(f"{engine}: runs {result[engine]['run_seconds']} s, median {result[engine]['median_s']} s", flush=True)
    result["celery_overhead_per_run_s"] = round(result["celery"]["median_s"] - result["in_process"]["median_s"], 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
