"""Launch a job through the running webserver, which has the definitions loaded already.

`dagster job launch` loads every definition (torch, OpenCV, …) in a new process first: 60-80 s on a
loaded machine. The webserver's GraphQL launch goes through the same run coordinator and queue.
"""

from __future__ import annotations

import json
import urllib.request

from wsi_assets.queue.webserver_view import TRANSPORT_ERRORS, graphql_answer

LOCATION = "wsi_assets.definitions"  # workspace.yaml's code location
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
  }
}
"""
ANSWER_TIMEOUT_S = 3  # whether a webserver is there at all
LAUNCH_TIMEOUT_S = 120  # a launch on a loaded machine takes seconds; never launch twice on a slow answer


class WebserverLaunchFailed(RuntimeError):
    """The webserver answered but refused the launch; the message is its reason, in one line."""


def dagster_webserver_at(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/server_info", timeout=ANSWER_TIMEOUT_S) as response:
            return "dagster_webserver_version" in json.load(response)
    except TRANSPORT_ERRORS:
        # Not listening, not a Dagster webserver, or one behind a login: the caller launches another way.
        return False


def launch_through_webserver(url: str, job: str, tags: dict[str, str]) -> str | None:
    """The new run's id; None when no Dagster webserver answers at `url` (the caller launches another way)."""
    if not dagster_webserver_at(url):
        return None
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "pipelineName": job},
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in tags.items()]},
    }
    try:
        answer = graphql_answer(url, LAUNCH_RUN, {"params": params}, LAUNCH_TIMEOUT_S)
    except TRANSPORT_ERRORS as error:
        raise WebserverLaunchFailed(f"the webserver at {url} did not answer the launch of {job}: {error}") from error
    body = answer if isinstance(answer, dict) else {}
    result = (body.get("data") or {}).get("launchPipelineExecution")
    if not result:
        raise WebserverLaunchFailed(f"the webserver at {url} did not launch {job}: {str(body.get('errors'))[:200]}")
    if result["__typename"] != "LaunchRunSuccess":
        reason = result.get("message") or "; ".join(e["message"] for e in result.get("errors", [])) or result["__typename"]
        raise WebserverLaunchFailed(f"the webserver at {url} refused to launch {job}: {reason.strip().splitlines()[0]}")
    return result["run"]["runId"]
