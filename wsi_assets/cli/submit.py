"""Queue a job for one slide or stack from the command line, through the same run queue as the UI.

    python -m wsi_assets.cli.submit alice/main/slide01 [--job process_slide]
    python -m wsi_assets.cli.submit alice/main/cells01 --job process_stack
    python -m wsi_assets.cli.submit alice/main --job finetune_from_reviews   # a branch: <user>/<branch>

Prints the run id, its page in the UI ($WSI_WEBSERVER_URL, default http://127.0.0.1:3000) and its
place in the queue. (`dagster asset materialize` would run in this process and bypass the queue.)
With a webserver answering, everything goes through its GraphQL API and this process imports no
Dagster; otherwise it says so in one line and uses `dagster job launch` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from wsi_assets.cli.graphql_launch import (
    LOCATION,
    WebserverLaunchFailed,
    launch_through_webserver,
)
from wsi_assets.cli.instance_home import (
    NoInstance,
    open_instance,
    served_url,
    served_url_and_home,
)
from wsi_assets.core.keys import InvalidSlideKey, SlideKey, name_problem
from wsi_assets.queue.webserver_view import (
    NoWebserverAnswer,
    QueueSnapshot,
    post_graphql,
    read_queue_from_webserver,
)

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
    from wsi_assets.uploads.checks import UploadRefused
    from wsi_assets.uploads.kinds import STACK, upload_kind

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
    from wsi_assets.uploads.checks import UploadRefused

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


ADD_PARTITION = """
mutation Add($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""


def add_partition_through_webserver(url: str, partitions: str, partition: str) -> None:
    """Register the partition in the webserver's instance; NoWebserverAnswer when none answers at `url`."""
    repo = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    result = post_graphql(url, ADD_PARTITION, {"repo": repo, "name": partitions, "key": partition})["addDynamicPartition"]
    if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
        reason = (result.get("message") or result["__typename"]).strip().splitlines()[0]
        raise WebserverLaunchFailed(f"the webserver at {url} refused to add {partition} to {partitions}: {reason}")


def submit_through_webserver(
    url: str, job: str, partitions: str, key: SlideKey | str, submission: str
) -> tuple[str, QueueSnapshot | None] | None:
    """(run id, the queue right after) through the webserver at `url`, importing no Dagster; None when none answers.

    Once the run is launched nothing falls back any more (that would launch it twice): a queue the
    webserver then fails to show is None.
    """
    try:
        add_partition_through_webserver(url, partitions, getattr(key, "partition_key", key))
    except NoWebserverAnswer:
        return None
    run_id = launch_through_webserver(url, job, launch_tags(key, submission))
    if run_id is None:
        return None
    try:
        return run_id, read_queue_from_webserver(url)
    except NoWebserverAnswer:
        return run_id, None


def submit_through_instance(job: str, partitions: str, key: SlideKey | str, submission: str) -> tuple[str, QueueSnapshot]:
    """(run id, the queue right after) with `dagster job launch`, which loads every definition: slow."""
    from dagster import RunsFilter

    from wsi_assets.cli.queue import instance_snapshot

    partition = getattr(key, "partition_key", key)
    with open_instance() as instance:
        if not instance.has_dynamic_partition(partitions, partition):
            instance.add_dynamic_partitions(partitions, [partition])
        subprocess.run(launch_command(key, job, submission), check=True, stdout=subprocess.DEVNULL)
        runs = instance.get_runs(RunsFilter(tags={SUBMISSION_TAG: submission}), limit=1)
        if not runs:
            raise RuntimeError("dagster job launch succeeded but no run carries this submission's tag")
        return runs[0].run_id, instance_snapshot(instance)


def submit(partition_key: str, job: str = "process_slide") -> str:
    """Queue `job` for the partition; prints and returns the run id."""
    from wsi_assets.cli.queue import current_places
    from wsi_assets.core.user_files import default_user_files_root
    from wsi_assets.uploads.checks import checked_upload, slide_format_problem
    from wsi_assets.uploads.kinds import not_a_stack

    stack = job in STACK_JOBS
    if job in BRANCH_JOBS:
        key, partitions = branch_with_reviews(default_user_files_root(), partition_key), "branches"
    else:
        key = SlideKey.parse(partition_key)
        # The sensor's own checks, so a file it skipped cannot be queued by hand.
        path = checked_upload(default_user_files_root(), key, not_a_stack if stack else slide_format_problem)
        refuse_unsettled(path, stack)
        partitions = "stacks" if stack else "slides"
    submission = uuid.uuid4().hex
    url, no_home = served_url_and_home()
    # The running webserver has the definitions loaded; `dagster job launch` loads them anew (a minute when busy).
    done = submit_through_webserver(url, job, partitions, key, submission) if url else None
    if done is None:
        if no_home is not None:
            raise no_home
        print(
            f"no Dagster webserver answered at {url}" if url else "no webserver address known",
            "- launching with `dagster job launch` (slower)",
            file=sys.stderr,
        )
        done = submit_through_instance(job, partitions, key, submission)
    run_id, snapshot = done
    places, _ = current_places(snapshot) if snapshot is not None else ([], [])
    print(f"run {run_id}")
    print(f"url {run_url(run_id)}")
    place = next((p for p in places if p.run.run_id == run_id), None)
    if snapshot is None:
        print("queue: the webserver did not answer after the launch; see python -m wsi_assets.cli.queue")
    elif place is None:
        print("queue: not queued any more (already starting, started or finished)")
    else:
        in_branch = "" if place.branch_position is None else f", {place.branch_position} in its branch"
        print(f"queue: position {place.position} of {len(places)}{in_branch}, waiting for: {place.waiting_for}")
    return run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Queue a job for one slide or stack (goes through the run queue).")
    parser.add_argument("partition_key", help="<user>/<branch>/<slide or stack>; <user>/<branch> for finetune_from_reviews")
    parser.add_argument("--job", choices=JOBS, default="process_slide")
    args = parser.parse_args(argv)
    # Imported here, not at the top, so that --help answers without numpy, tifffile and OpenSlide.
    from wsi_assets.uploads.checks import UploadRefused
    from wsi_assets.uploads.listing import UploadRootUnavailable

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
