"""Queue a job for one slide or stack from the command line, through the same run queue as the UI.

    python -m wsi_assets.cli.submit alice/main/slide01 [--job process_slide]
    python -m wsi_assets.cli.submit alice/main/cells01 --job process_stack

(`dagster asset materialize` would run in this process and bypass the queue.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from wsi_assets.core.keys import InvalidSlideKey, SlideKey
from wsi_assets.core.user_files import default_user_files_root
from wsi_assets.uploads.checks import (
    UploadRefused,
    checked_upload,
    slide_format_problem,
)
from wsi_assets.uploads.kinds import not_a_stack
from wsi_assets.uploads.listing import UploadRootUnavailable

JOBS = ("process_slide", "tissue_mask_only", "export_cells", "classify_cells", "process_stack")
STACK_JOBS = ("process_stack",)


def launch_command(key: SlideKey, job: str) -> list[str]:
    tags = json.dumps({"dagster/partition": key.partition_key})
    # The interpreter running this command, so an installed wheel works without bin/ on PATH.
    return [sys.executable, "-m", "dagster", "job", "launch", "-m", "wsi_assets.definitions", "-j", job, "--tags", tags]


def submit(partition_key: str, job: str = "process_slide") -> None:
    from dagster import DagsterInstance

    key = SlideKey.parse(partition_key)
    # The sensor's own checks, so a file it skipped cannot be queued by hand.
    stack = job in STACK_JOBS
    checked_upload(default_user_files_root(), key, not_a_stack if stack else slide_format_problem)
    partitions = "stacks" if stack else "slides"
    with DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(partitions, key.partition_key):
            instance.add_dynamic_partitions(partitions, [key.partition_key])
    subprocess.run(launch_command(key, job), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Queue a job for one slide or stack (goes through the run queue).")
    parser.add_argument("partition_key", help="<user>/<branch>/<slide or stack>")
    parser.add_argument("--job", choices=JOBS, default="process_slide")
    args = parser.parse_args()
    try:
        submit(args.partition_key, args.job)
    except (InvalidSlideKey, UploadRefused, UploadRootUnavailable, PermissionError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"error: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: dagster job launch failed with exit code {error.returncode}")


if __name__ == "__main__":
    main()
