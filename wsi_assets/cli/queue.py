"""Print the run queue: every queued run's place overall and in its branch, and what it waits for.

    python -m wsi_assets.queue [--user U] [--branch B]

Reads the instance of $DAGSTER_HOME (the daemon's), so it works with or without the UI.
"""

from __future__ import annotations

import argparse
import sys

from wsi_assets.queue.table import matches, queue_table


def current_places(instance):
    from wsi_assets.queue.dagster_adapter import read_queue
    from wsi_assets.queue.positions import queue_places

    queued, in_progress, limits = read_queue(instance)
    return queue_places(queued, in_progress, limits), in_progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.queue", description="Show where queued runs stand and what they wait for.")
    parser.add_argument("--user", help="only this user's runs")
    parser.add_argument("--branch", help="only this branch: <user>/<branch>, or a branch name for every user")
    args = parser.parse_args(argv)
    from dagster import DagsterInstance

    try:
        instance = DagsterInstance.get()
    except Exception as error:  # noqa: BLE001 - any instance problem is one line for the user
        sys.exit(f"error: cannot open the Dagster instance (is DAGSTER_HOME set to the daemon's?): {str(error).splitlines()[0]}")
    with instance:
        places, in_progress = current_places(instance)
    shown = [place for place in places if matches(place, args.user, args.branch)]
    print(f"{len(places)} runs queued, {len(in_progress)} in progress; showing {len(shown)}")
    if shown:
        print(queue_table(shown))


if __name__ == "__main__":
    main()
