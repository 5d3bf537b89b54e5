"""Queue a job for one slide or stack from the command line, through the same run queue as the UI.

    python -m wsi_assets.cli.submit alice/main/slide01 [--job process_slide]
    python -m wsi_assets.cli.submit alice/main/cells01 --job process_stack
    python -m wsi_assets.cli.submit alice/main --job finetune_from_reviews   # a branch: <user>/<branch>

Prints the run id, its page in the UI ($WSI_WEBSERVER_URL, default http://127.0.0.1:3000) and its
place in the queue. (`dagster asset materialize` would run in this process and bypass the queue.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from wsi_assets.cli.graphql_launch import WebserverLaunchFailed, launch_through_webserver
from wsi_assets.cli.instance_home import NoInstance, open_instance, served_url
from wsi_assets.core.keys import InvalidSlideKey, SlideKey, name_problem
from wsi_assets.core.user_files import default_user_files_root
from wsi_assets.uploads.checks import (
    UploadRefused,
    checked_upload,
    slide_format_problem,
)
from wsi_assets.uploads.kinds import STACK, not_a_stack, upload_kind
from wsi_assets.uploads.listing import UploadRootUnavailable

JOBS = ("process_slide", "tissue_mask_only", "export_cells", "classify_cells", "process_stack", "finetune_from_reviews")
STACK_JOBS = ("process_stack",)
BRANCH_JOBS = ("finetune_from_reviews",)  # one partition per branch: <user>/<branch>
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
# Ties the launched run to this command: `dagster job launch` does not print the run id.
SUBMISSION_TAG = "wsi/submission"
STABLE_LOOK_S = 1.0


def run_url(run_id: str) -> str:
    return f"{(served_url() or DEFAULT_WEBSERVER_URL).rstrip('/')}/runs/{run_id}"


def refuse_unsettled(path: Path, stack: bool) -> None:
    """The sensor's remaining rules: the file is unchanged over a look, and of the job's kind."""
    before = path.stat()
    time.sleep(STABLE_LOOK_S)
    after = path.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise UploadRefused(f"{path.name}: still being written (size or time changed); submit it once the copy is done")
    kind, problem = upload_kind(path)
    if problem is not None:
        raise UploadRefused(f"{path.name}: {problem}")
    if (kind == STACK) != stack:
        job_kind = "stack" if stack else "slide"
        raise UploadRefused(f"{path.name}: the sensor treats it as a {kind}, not a {job_kind}; choose a {kind} job")


def branch_with_reviews(root: Path, partition_key: str) -> str:
    """The `<user>/<branch>` key of a fine-tune, refused unless the branch has a reviews folder."""
    parts = partition_key.split("/")
    if len(parts) != 2:
        raise InvalidSlideKey(f"{partition_key!r}: finetune_from_reviews takes a branch, <user>/<branch> (e.g. alice/main)")
    for what, value in zip(("user", "branch"), parts):
        problem = name_problem(value, what)
        if problem:
            raise InvalidSlideKey(problem)
    reviews = root / parts[0] / "reviews" / parts[1]
    if not reviews.is_dir():
        raise UploadRefused(f"no reviews for {partition_key}: put the corrected cells (QuPath GeoJSON) in {reviews} first")
    return partition_key


def launch_tags(key: SlideKey | str, submission: str = "") -> dict[str, str]:
    tags = {"dagster/partition": getattr(key, "partition_key", key)}
    if submission:
        tags[SUBMISSION_TAG] = submission
    return tags


def launch_command(key: SlideKey | str, job: str, submission: str = "") -> list[str]:
    tags = json.dumps(launch_tags(key, submission))
    # The interpreter running this command, so an installed wheel works without bin/ on PATH.
    return [sys.executable, "-m", "dagster", "job", "launch", "-m", "wsi_assets.definitions", "-j", job, "--tags", tags]


def submit(partition_key: str, job: str = "process_slide") -> str:
    """Queue `job` for the partition; prints and returns the run id."""
    from dagster import RunsFilter

    from wsi_assets.cli.queue import current_places

    stack = job in STACK_JOBS
    if job in BRANCH_JOBS:
        key, partitions = branch_with_reviews(default_user_files_root(), partition_key), "branches"
    else:
        key = SlideKey.parse(partition_key)
        # The sensor's own checks, so a file it skipped cannot be queued by hand.
        path = checked_upload(default_user_files_root(), key, not_a_stack if stack else slide_format_problem)
        refuse_unsettled(path, stack)
        partitions = "stacks" if stack else "slides"
    partition = getattr(key, "partition_key", key)
    submission = uuid.uuid4().hex
    with open_instance() as instance:
        if not instance.has_dynamic_partition(partitions, partition):
            instance.add_dynamic_partitions(partitions, [partition])
        url = served_url()
        # The running webserver has the definitions loaded; `dagster job launch` loads them anew (a minute when busy).
        launched = launch_through_webserver(url, job, launch_tags(key, submission)) if url else None
        if launched is None:
            subprocess.run(launch_command(key, job, submission), check=True, stdout=subprocess.DEVNULL)
        runs = instance.get_runs(RunsFilter(tags={SUBMISSION_TAG: submission}), limit=1)
        if not runs:
            where = f"the webserver at {url} serves another instance than {os.environ['DAGSTER_HOME']}" if launched else "dagster job launch succeeded but no run carries this submission's tag"
            raise RuntimeError(where)
        run = runs[0]
        places, _ = current_places(instance)
    print(f"run {run.run_id}")
    print(f"url {run_url(run.run_id)}")
    place = next((p for p in places if p.run.run_id == run.run_id), None)
    if place is None:
        print("queue: not queued any more (already starting, started or finished)")
    else:
        in_branch = "" if place.branch_position is None else f", {place.branch_position} in its branch"
        print(f"queue: position {place.position} of {len(places)}{in_branch}, waiting for: {place.waiting_for}")
    return run.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Queue a job for one slide or stack (goes through the run queue).")
    parser.add_argument("partition_key", help="<user>/<branch>/<slide or stack>; <user>/<branch> for finetune_from_reviews")
    parser.add_argument("--job", choices=JOBS, default="process_slide")
    args = parser.parse_args(argv)
    try:
        submit(args.partition_key, args.job)
    except (InvalidSlideKey, UploadRefused, UploadRootUnavailable, PermissionError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"error: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: dagster job launch failed with exit code {error.returncode}")
    except (NoInstance, WebserverLaunchFailed, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
