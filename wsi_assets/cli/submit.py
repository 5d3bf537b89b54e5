"""Queue a job for one slide from the command line, through the same run queue as the UI.

    python -m wsi_assets.cli.submit alice/main/slide01 [--job process_slide]

(`dagster asset materialize` would run in this process and bypass the queue.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from wsi_assets.core.keys import InvalidSlideKey, SlideKey
from wsi_assets.core.user_files import default_user_files_root
from wsi_assets.uploads.checks import UploadRefused, checked_upload
from wsi_assets.uploads.listing import UploadRootUnavailable

JOBS = ("process_slide", "tissue_mask_only", "export_cells", "classify_cells")


def launch_command(key: SlideKey, job: str) -> list[str]:
    tags = json.dumps({"dagster/partition": key.partition_key})
    # The interpreter running this command, so an installed wheel works without bin/ on PATH.
    return [sys.executable, "-m", "dagster", "job", "launch", "-m", "wsi_assets.definitions", "-j", job, "--tags", tags]


def submit(partition_key: str, job: str = "process_slide") -> None:
    from dagster import DagsterInstance

    key = SlideKey.parse(partition_key)
    # The sensor's own checks, so a file it skipped cannot be queued by hand.
    checked_upload(default_user_files_root(), key)
    with DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition("slides", key.partition_key):
            instance.add_dynamic_partitions("slides", [key.partition_key])
    subprocess.run(launch_command(key, job), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Queue a job for one slide (goes through the run queue).")
    parser.add_argument("partition_key", help="<user>/<branch>/<slide>")
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
