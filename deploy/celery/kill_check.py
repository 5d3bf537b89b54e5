"""A GPU worker killed in the middle of a step: the run fails in time, its branch moves on.

    python deploy/celery/kill_check.py --gpu-worker gpu1=PGID --gpu-worker gpu2=PGID [--bound 60]

Run by smoke.sh --kill on the smoke's services, with two GPU workers up. Uploads a larger slide
and then a small one into one branch; when the first run's segmentation is running on a GPU
worker, SIGKILLs that worker's whole process group (a lost machine). Checks: the run is marked
failed within --bound seconds, naming the lost worker; the branch's next run then starts and
succeeds, its segmentation on the surviving GPU worker. Exits 1 with one line on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from smoke_audit import GPU_STEP, step_workers  # its sibling: a script's folder is on sys.path
from wsi_assets.queue.dagster_adapter import celery_steps_in_flight
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class CheckFailed(Exception):
    pass


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise CheckFailed(f"{what} not reached within {timeout:.0f} s")


def upload(root: Path, key: str, source: Path) -> None:
    user, branch, stem = key.split("/")
    folder = root / user / "inputs" / branch
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / f".{stem}.part")
    (folder / f".{stem}.part").rename(folder / f"{stem}.svs")


def run_ids(instance) -> set[str]:
    return {r.dagster_run.run_id for r in instance.get_run_records()}


def failure_message(instance, run_id: str) -> str:
    """What run monitoring wrote when it failed the run."""
    texts = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        for text in (entry.user_message, event.message if event is not None else None):
            if text and "Celery worker gone" in text:
                texts.append(text)
    return " ".join(texts)


def check(instance, root: Path, gpu_groups: dict[str, int], bound: float) -> dict:
    work = Path(tempfile.mkdtemp())
    big, small = work / "big.svs", work / "small.svs"
    write_synthetic_slide(big, SyntheticSlideSpec(width=16000, height=12000, mpp=0.25, seed=9))
    write_synthetic_slide(small, SyntheticSlideSpec(width=1500, height=1200, mpp=0.25, seed=5))
    before = run_ids(instance)
    upload(root, "dee/crash/big", big)
    first = wait_until(lambda: sorted(run_ids(instance) - before), 120, "the big slide's run submitted")[0]
    upload(root, "dee/crash/next", small)
    second = wait_until(lambda: sorted(run_ids(instance) - before - {first}), 120, "the next run submitted")[0]
    shutil.rmtree(work)

    in_flight = wait_until(
        lambda: celery_steps_in_flight(instance, first).get(GPU_STEP), 300, "segmentation running on a GPU worker", 0.1
    )
    victim = in_flight.split("@")[0]
    if victim not in gpu_groups:
        raise CheckFailed(f"segmentation ran on {in_flight}, not on a GPU worker")
    os.killpg(gpu_groups[victim], signal.SIGKILL)
    killed_at = time.time()
    if instance.get_run_by_id(first).status != DagsterRunStatus.STARTED or GPU_STEP not in celery_steps_in_flight(
        instance, first
    ):
        raise CheckFailed("the segmentation step ended before the kill: use a bigger slide")

    wait_until(lambda: instance.get_run_by_id(first).status in DONE, bound, f"the killed run marked failed within {bound:.0f} s")
    detected_s = time.time() - killed_at
    status = instance.get_run_by_id(first).status
    if status != DagsterRunStatus.FAILURE:
        raise CheckFailed(f"the killed run ended {status.value}, not FAILURE")
    if victim not in failure_message(instance, first):
        raise CheckFailed(f"the killed run's log does not name the lost worker {victim}")
    wait_until(lambda: instance.get_run_by_id(second).status != DagsterRunStatus.QUEUED, 60, "the branch's next run started")
    freed_s = time.time() - killed_at
    wait_until(lambda: instance.get_run_by_id(second).status in DONE, 300, "the next run finished", 1)
    if instance.get_run_by_id(second).status != DagsterRunStatus.SUCCESS:
        raise CheckFailed(f"the next run ended {instance.get_run_by_id(second).status.value}")
    survivor = step_workers(instance, second).get(GPU_STEP, "")
    if survivor.split("@")[0] == victim or survivor.split("@")[0] not in gpu_groups:
        raise CheckFailed(f"the next run's segmentation ran on {survivor!r}, expected the surviving GPU worker")
    return {
        "killed": in_flight,
        "failed_after_s": round(detected_s, 1),
        "branch_freed_after_s": round(freed_s, 1),
        "next_run_on": survivor,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu-worker", action="append", required=True, help="NAME=PGID of a GPU worker")
    parser.add_argument("--bound", type=float, default=60, help="seconds within which the killed run must be failed")
    args = parser.parse_args()
    groups = {name: int(pgid) for name, pgid in (item.split("=") for item in args.gpu_worker)}
    with DagsterInstance.get() as instance:
        try:
            figures = check(instance, Path(os.environ["WSI_USER_FILES"]), groups, args.bound)
        except CheckFailed as error:
            print(f"smoke: FAILED: kill test: {error}")
            return 1
    print(
        f"smoke: OK: kill test: {figures['killed']} killed mid-segmentation; run failed after {figures['failed_after_s']} s "
        f"(bound {args.bound:.0f} s), branch freed after {figures['branch_freed_after_s']} s, next run succeeded on {figures['next_run_on']}"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
