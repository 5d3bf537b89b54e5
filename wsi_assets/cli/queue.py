"""Print the run queue: every queued run's place overall and in its branch, and what it waits for;
then the started runs whose GPU step waits for a slot of the `gpu` pool, in the order they get one.

    python -m wsi_assets.cli.queue [--user U] [--branch B]   (or: wsi-assets-queue)

Asks the running webserver ($WSI_WEBSERVER_URL, else the address scripts/run.sh wrote beside the
instance) over GraphQL, without importing Dagster: under a second. Only when no webserver answers
does it open the instance of $DAGSTER_HOME (else the checkout's .dagster_home/) itself, which
imports Dagster (several seconds), and it says so in one line. Loads no Dagster definitions.
"""

from __future__ import annotations

import argparse
import sys

from wsi_assets.cli.instance_home import (
    NoInstance,
    open_instance,
    served_url_and_home,
)
from wsi_assets.queue.positions import gpu_waits, queue_places
from wsi_assets.queue.table import gpu_wait_table, matches, queue_table
from wsi_assets.queue.webserver_view import (
    NoWebserverAnswer,
    QueueSnapshot,
    read_queue_from_webserver,
)


def instance_snapshot(instance) -> QueueSnapshot:
    """The queue read from the instance itself (imports Dagster)."""
    from wsi_assets.queue.dagster_adapter import gpu_pending_steps, read_queue

    queued, in_progress, limits = read_queue(instance)
    return QueueSnapshot(queued, in_progress, limits, gpu_pending_steps(instance))


def current_places(snapshot: QueueSnapshot):
    return queue_places(snapshot.queued, snapshot.in_progress, snapshot.limits), snapshot.in_progress


def current_gpu_waits(snapshot: QueueSnapshot):
    """(wait, run) for each started run whose GPU step waits for a slot, in slot order."""
    found = ((wait, snapshot.run(wait.run_id)) for wait in gpu_waits(snapshot.gpu_pending))
    return [(wait, run) for wait, run in found if run is not None]


def read_snapshot(say=lambda line: print(line, file=sys.stderr)) -> QueueSnapshot:
    """The queue from the webserver when one answers, else from the instance (and `say` why, in one line)."""
    url, no_home = served_url_and_home()
    if url:
        try:
            return read_queue_from_webserver(url)
        except NoWebserverAnswer as error:
            reason = str(error)
    else:
        reason = "no webserver address known (run.sh writes it; or set WSI_WEBSERVER_URL)"
    if no_home is not None:
        raise NoInstance(f"{no_home}; and {reason}" if url else str(no_home))
    say(f"{reason}: reading the Dagster instance directly (slower)")
    with open_instance() as instance:
        return instance_snapshot(instance)


def print_queue(snapshot: QueueSnapshot, user: str | None = None, branch: str | None = None) -> None:
    places, in_progress = current_places(snapshot)
    gpu = current_gpu_waits(snapshot)
    shown = [place for place in places if matches(place, user, branch)]
    print(f"{len(places)} runs queued, {len(in_progress)} in progress; showing {len(shown)}")
    if shown:
        print(queue_table(shown))
    shown_gpu = [(wait, run) for wait, run in gpu if matches(run, user, branch)]
    if gpu:
        print(f"{len(gpu)} started runs waiting for a gpu slot; showing {len(shown_gpu)}")
    if shown_gpu:
        print(gpu_wait_table(shown_gpu))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wsi_assets.cli.queue", description="Show where queued runs stand and what they wait for."
    )
    parser.add_argument("--user", help="only this user's runs")
    parser.add_argument("--branch", help="only this branch: <user>/<branch>, or a branch name for every user")
    args = parser.parse_args(argv)
    try:
        snapshot = read_snapshot()
    except NoInstance as error:
        sys.exit(f"error: {error}")
    print_queue(snapshot, args.user, args.branch)


if __name__ == "__main__":
    main()
