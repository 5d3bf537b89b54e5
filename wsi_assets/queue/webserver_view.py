"""The queue as the running webserver sees it, over its GraphQL API: no Dagster import, one request.

Importing Dagster to open the instance takes seconds (11-15 s in all on a loaded 2-core machine); the
webserver has it open already. The answer is turned into the same records `dagster_adapter`
reads from the instance (runs, the coordinator's limits, the `gpu` pool), so `positions` places
them identically whichever way they were read.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from wsi_assets.queue.positions import PendingStep, QueueLimits, QueueRun
from wsi_assets.queue.tags import GPU_POOL

IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")  # Dagster's ACTIVE_RUN_STATUSES: what the queue daemon counts
QUEUE_QUERY = """
query Queue($statuses: [RunStatus!]) {
  runsOrError(filter: {statuses: $statuses}) {
    __typename
    ... on Runs { results { runId status jobName creationTime tags { key value } } }
    ... on PythonError { message }
  }
  instance {
    runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
    supportsConcurrencyLimits
    poolConfig { defaultPoolLimit }
    concurrencyLimits {
      concurrencyKey slotCount
      claimedSlots { runId stepKey }
      pendingSteps { runId stepKey enqueuedTimestamp assignedTimestamp priority }
    }
  }
}
"""
ANSWER_TIMEOUT_S = 10  # a loaded webserver answers in well under a second; beyond this, read the instance


class NoWebserverAnswer(RuntimeError):
    """No Dagster webserver answered the query at that address; the message says why, in one line."""


@dataclass(frozen=True)
class QueueSnapshot:
    """What `dagster_adapter.read_queue` and `gpu_pending_steps` return, read in one go."""

    queued: list[QueueRun]
    in_progress: list[QueueRun]
    limits: QueueLimits
    gpu_pending: list[PendingStep] = field(default_factory=list)

    def run(self, run_id: str) -> QueueRun | None:
        return next((run for run in (*self.in_progress, *self.queued) if run.run_id == run_id), None)


# What a request raises when nothing, or not Dagster (a login page, not JSON), answers.
TRANSPORT_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, ValueError)


def graphql_answer(url: str, query: str, variables: dict, timeout: float) -> object:
    """The whole decoded answer to one GraphQL request (data and errors); TRANSPORT_ERRORS pass through."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def post_graphql(url: str, query: str, variables: dict, timeout: float = ANSWER_TIMEOUT_S) -> dict:
    """The `data` of a GraphQL answer; NoWebserverAnswer when nothing (or not Dagster) answers."""
    try:
        body = graphql_answer(url, query, variables, timeout)
    except TRANSPORT_ERRORS as error:
        # Not listening, not Dagster, or a login page in front of it (deploy/auth's proxy).
        raise NoWebserverAnswer(f"no Dagster webserver answered at {url} ({getattr(error, 'reason', error)})") from error
    if not isinstance(body, dict) or not body.get("data"):
        errors = body.get("errors") if isinstance(body, dict) else None
        raise NoWebserverAnswer(f"the webserver at {url} gave no answer: {str(errors)[:200]}")
    return body["data"]


def _queue_run(answer: dict, order: int) -> QueueRun:
    tags = {tag["key"]: tag["value"] for tag in answer["tags"]}
    return QueueRun(answer["runId"], tags, answer["jobName"], order, float(answer["creationTime"]))


def _tag_limits(yaml_text: str | None) -> tuple:
    if not yaml_text:
        return ()
    import yaml  # the webserver sends the coordinator's tag limits as YAML; PyYAML imports in milliseconds

    return tuple(yaml.safe_load(yaml_text) or ())


def queue_from_answer(data: dict) -> QueueSnapshot:
    """The queue records in a QUEUE_QUERY answer."""
    runs = data["runsOrError"]
    if runs["__typename"] != "Runs":
        raise NoWebserverAnswer(f"the webserver could not list the runs: {runs.get('message', runs['__typename'])}")
    results = runs["results"]
    # Newest first, as Dagster's run storage lists them: the storage order is the reverse.
    records = [(_queue_run(answer, len(results) - index), answer["status"]) for index, answer in enumerate(results)]
    queued = [run for run, status in records if status == "QUEUED"]
    in_progress = [run for run, status in records if status in IN_PROGRESS]
    started = {run.run_id for run, status in records if status == "STARTED"}

    instance = data["instance"]
    config = instance.get("runQueueConfig")
    slots, taken, pending = (instance.get("poolConfig") or {}).get("defaultPoolLimit") or 1, 0, []
    pool = next((info for info in instance.get("concurrencyLimits") or () if info["concurrencyKey"] == GPU_POOL), None)
    if instance.get("supportsConcurrencyLimits") and pool is not None:
        slots, taken = pool["slotCount"], len(pool["claimedSlots"])
        claimed = {(slot["runId"], slot["stepKey"]) for slot in pool["claimedSlots"]}
        # As gpu_pending_steps: a claimed step's pending row stays; runs that ended leave theirs for a while.
        pending = [
            PendingStep(
                step["runId"],
                step["stepKey"],
                float(step["enqueuedTimestamp"]),
                step.get("priority") or 0,
                step.get("assignedTimestamp") is not None,
            )
            for step in pool["pendingSteps"]
            if (step["runId"], step["stepKey"]) not in claimed and step["runId"] in started
        ]
    limits = QueueLimits(
        max_concurrent_runs=config["maxConcurrentRuns"] if config else -1,
        tag_limits=_tag_limits(config.get("tagConcurrencyLimitsYaml")) if config else (),
        gpu_slots=slots,
        gpu_slots_taken=taken,
    )
    return QueueSnapshot(queued, in_progress, limits, pending)


def read_queue_from_webserver(url: str, timeout: float = ANSWER_TIMEOUT_S) -> QueueSnapshot:
    """The queue as the webserver at `url` sees it; NoWebserverAnswer when none answers there."""
    return queue_from_answer(post_graphql(url, QUEUE_QUERY, {"statuses": ["QUEUED", *IN_PROGRESS]}, timeout))
