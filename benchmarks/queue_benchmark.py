"""Run-queue benchmark on a real daemon: many short runs over many branches and users.

    python benchmarks/queue_benchmark.py --storage sqlite   [--runs 1000 --branches 50 --users 10]
    python benchmarks/queue_benchmark.py --storage postgres (needs WSI_PG_*; see .ci/start_postgres.sh)

Phase 1 submits every run at once (round-robin over the branches, through the webserver's
GraphQL API as the UI does) and waits for the queue to drain: it reports violations of the
queue's promises and the dequeue throughput. Phase 2 submits runs one at a time on idle
branches: the median time from submission to the first step is the queue's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from wsi_assets.testing.dagster_services import (
    daemon_command,
    free_port,
    launch_over_graphql,
    running,
    service_env,
    wait_for_http,
    wait_until,
    webserver_command,
)

REPO = Path(__file__).resolve().parents[1]

PROBE = REPO / "benchmarks" / "queue"


def launch(port: int, key: str) -> tuple[str, float]:
    submitted = time.time()
    return launch_over_graphql(port, "queue_probe", "probe_job", key), submitted


def first_step_start(instance, run_id: str) -> float | None:
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START, limit=1).records
    return records[0].event_log_entry.timestamp if records else None


def finished(instance, run_ids: list[str]) -> bool:
    from dagster import DagsterRunStatus, RunsFilter

    in_flight = instance.get_runs_count(
        RunsFilter(
            run_ids=run_ids,
            statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED],
        )
    )
    return in_flight == 0


def make_instance_home(storage: str) -> tuple[Path, dict]:
    home = Path(tempfile.mkdtemp(prefix=f"wsi_queue_{storage}_"))
    extra = {}
    if storage == "sqlite":
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    else:
        import psycopg2

        names = ("WSI_PG_HOST", "WSI_PG_PORT", "WSI_PG_USER", "WSI_PG_PASSWORD")
        settings = {n: os.environ[n] for n in names}
        database = f"wsi_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(
            host=settings["WSI_PG_HOST"],
            port=settings["WSI_PG_PORT"],
            user=settings["WSI_PG_USER"],
            password=settings["WSI_PG_PASSWORD"],
            dbname="postgres",
        )
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {database}")
        admin.close()
        extra = {**settings, "WSI_PG_DB": database}
        os.environ.update(extra)
        shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    return home, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--branches", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()

    from dagster import DagsterInstance

    from wsi_assets.testing.queue_audit import audit_queue, gpu_hold_spans, run_spans

    home, extra = make_instance_home(args.storage)
    env = service_env(home, home / "user_files", extra)
    instance = DagsterInstance.from_config(str(home))
    branches = [(f"user{b % args.users:02d}", f"branch{b:02d}") for b in range(args.branches)]
    keys = [f"{u}/{b}/slide{i:04d}" for i in range(args.runs // args.branches + 1) for u, b in branches][: args.runs]
    latency_keys = [f"idle{i:02d}/main/slide" for i in range(args.latency_runs)]
    instance.add_dynamic_partitions("slides", keys + latency_keys)
    port = free_port()
    workspace = ["-w", str(PROBE / "workspace.yaml")]
    daemon = daemon_command()[:-2] + workspace
    web = webserver_command(port)[:-2] + workspace
    with running(daemon, env, home / "daemon.log"), running(web, env, home / "webserver.log"):
        wait_for_http(f"http://127.0.0.1:{port}/server_info")
        print(f"storage={args.storage} runs={args.runs} branches={args.branches} users={args.users}", flush=True)
        t0 = time.time()
        run_ids = [launch(port, key)[0] for key in keys]
        print(f"submitted {len(run_ids)} runs in {time.time() - t0:.1f} s", flush=True)
        wait_until(lambda: finished(instance, run_ids), timeout=6 * 3600, interval=10, what="queue drained")
        drained = time.time()

        latencies = []
        for key in latency_keys:  # one at a time, branch and limits free
            run_id, submitted = launch(port, key)
            wait_until(lambda: finished(instance, [run_id]), timeout=600, interval=0.2, what="latency run")
            latencies.append(first_step_start(instance, run_id) - submitted)

    spans = run_spans(instance, run_ids)
    audit = audit_queue(spans, gpu_hold_spans(instance, run_ids))
    starts = sorted(s.started for s in spans if s.started)
    statuses = {}
    for s in spans:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    throughput = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else 0.0
    result = {
        "storage": args.storage,
        "runs": args.runs,
        "branches": args.branches,
        "users": args.users,
        "statuses": statuses,
        "violations": audit.violations(user_limit=2, global_limit=4, gpu_limit=1),
        "branch_overlaps": len(audit.branch_overlaps),
        "order_violations": len(audit.order_violations),
        "max_runs_per_user": audit.max_runs_per_user,
        "max_runs_in_all": audit.max_runs_in_all,
        "max_gpu_steps": audit.max_gpu_steps,
        "dequeue_runs_per_s": round(throughput, 3),
        "drain_s": round(drained - t0, 1),
        "median_submit_to_first_step_s": round(statistics.median(latencies), 2) if latencies else None,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks" / "output"
    out.mkdir(exist_ok=True)
    (out / f"queue_{args.storage}_{args.runs}.json").write_text(json.dumps(result, indent=2))
    instance.dispose()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
