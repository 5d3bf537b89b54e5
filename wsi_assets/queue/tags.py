"""The run-queue tags of a slide run, derived from its partition, and the GPU pool's name.

Every launch path (sensor, UI launchpad, UI asset graph, backfills, `dagster job launch`)
sets `dagster/partition`, but only some carry a job's own tags; so the queue keys on tags
derived here at submit time.
"""

from __future__ import annotations

from collections.abc import Mapping

from wsi_assets.core.keys import InvalidSlideKey, SlideKey, name_problem

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PRIORITY_TAG = "dagster/priority"
USER_TAG = "wsi/user"
BRANCH_TAG = "wsi/branch"
# The segmentation step's Dagster pool (limit = number of GPUs) and the op tag engines route
# GPU steps by (dagster-k8s, dagster-celery).
GPU_POOL = "gpu"
# Jobs with a step in GPU_POOL (a test checks this against the definitions). Dagster's ad-hoc
# asset job may select one too, so it counts. Other jobs never wait for a GPU slot.
GPU_JOBS = frozenset({"process_slide", "process_batch", "__ASSET_JOB"})
DEVICE_TAG = "wsi/device"


class UnqueueableRun(ValueError):
    """A run the branch queue cannot order (e.g. one run over slides of several branches)."""


def _user_and_branch(partition_key: str) -> tuple[str, str]:
    """The user and branch of a slide, stack or batch key (<user>/<branch>/<name>) or of a
    per-branch key (<user>/<branch>: reviews, fine-tuning), which queue in that branch too."""
    parts = partition_key.split("/")
    if len(parts) == 2:
        for what, value in zip(("user", "branch"), parts):
            problem = name_problem(value, what)
            if problem:
                raise InvalidSlideKey(problem)
        return parts[0], parts[1]
    key = SlideKey.parse(partition_key)
    return key.user, key.branch


def _branch_tags(user: str, branch: str) -> dict[str, str]:
    # The branch tag holds the user too: branches of different users must not share a queue.
    return {USER_TAG: user, BRANCH_TAG: f"{user}/{branch}"}


def slide_queue_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """`wsi/user` and `wsi/branch` for a run with these tags; {} for runs that are not per slide."""
    try:
        if PARTITION_TAG in tags:
            return _branch_tags(*_user_and_branch(tags[PARTITION_TAG]))
        if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            start, end = _user_and_branch(tags[RANGE_START_TAG]), _user_and_branch(tags[RANGE_END_TAG])
            if start != end:
                raise UnqueueableRun(
                    f"one run over slides {tags[RANGE_START_TAG]} … {tags[RANGE_END_TAG]} spans several branches, "
                    "which run one at a time each; launch it as a multi-run backfill (one run per slide) instead"
                )
            return _branch_tags(*start)
    except InvalidSlideKey as error:
        raise UnqueueableRun(f"cannot queue this run: {error}") from error
    return {}


def tags_to_store(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags to add so the run queues in its branch, in submission order."""
    wanted = slide_queue_tags(tags)
    if wanted and tags.get(PRIORITY_TAG, "0") != "0":
        # A priority would let a later run of a branch start before an earlier one.
        wanted[PRIORITY_TAG] = "0"
    return {key: value for key, value in wanted.items() if tags.get(key) != value}
