"""Print the run queue: every queued run's place overall and in its branch, and what it waits for;
then the started runs whose GPU step waits for a slot of the `gpu` pool, in the order they get one.

    python -m wsi_assets.queue [--user U] [--branch B]

Reads the instance of $DAGSTER_HOME, else the checkout's .dagster_home/ (scripts/run.sh's), so it
works with or without the UI. Loads no Dagster definitions: it reads the run records only.
"""

from __future__ import annotations

import argparse
import sys

from wsi_assets.cli.instance_home import NoInstance, open_instance
from wsi_assets.queue.table import gpu_wait_table, matches, queue_table


def current_places(instance):
    from wsi_assets.queue.dagster_adapter import read_queue
    from wsi_assets.queue.positions import queue_places

    queued, in_progress, limits = read_queue(instance)
    return queue_places(queued, in_progress, limits), in_progress


def current_gpu_waits(instance):
    """(wait, run) for each started run whose GPU step waits for a slot, in slot order."""
    from dagster import RunsFilter

    from wsi_assets.queue.dagster_adapter import _queue_run, gpu_pending_steps
    from wsi_assets.queue.positions import gpu_waits

    waits = gpu_waits(gpu_pending_steps(instance))
    if not waits:
        return []
    runs = {r.dagster_run.run_id: _queue_run(r) for r in instance.get_run_records(RunsFilter(run_ids=[w.run_id for w in waits]))}
    return [(wait, runs[wait.run_id]) for wait in waits if wait.run_id in runs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.queue", description="Show where queued runs stand and what they wait for.")
    parser.add_argument("--user", help="only this user's runs")
    parser.add_argument("--branch", help="only this branch: <user>/<branch>, or a branch name for every user")
    args = parser.parse_args(argv)
    try:
        instance = open_instance()
    except NoInstance as error:
        sys.exit(f"error: {error}")
    with instance:
        places, in_progress = current_places(instance)
        gpu = current_gpu_waits(instance)
    shown = [place for place in places if matches(place, args.user, args.branch)]
    print(f"{len(places)} runs queued, {len(in_progress)} in progress; showing {len(shown)}")
    if shown:
        print(queue_table(shown))
    shown_gpu = [(wait, run) for wait, run in gpu if matches(run, args.user, args.branch)]
    if gpu:
        print(f"{len(gpu)} started runs waiting for a gpu slot; showing {len(shown_gpu)}")
    if shown_gpu:
        print(gpu_wait_table(shown_gpu))


if __name__ == "__main__":
    main()
