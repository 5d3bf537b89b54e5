"""`submit`'s launch through the webserver's GraphQL API, against a stand-in webserver: the request it
sends and the one-line reason for each way a launch can fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wsi_assets.cli.graphql_launch import LAUNCH_RUN, WebserverLaunchFailed, launch_through_webserver


class StandIn:
    """A Dagster webserver's /server_info, and a /graphql that gives `answer` (bytes) to each request."""

    def __init__(self) -> None:
        self.answer = b"{}"
        self.requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send(json.dumps({"dagster_webserver_version": "1.0"}).encode())

            def do_POST(self) -> None:
                stand_in.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self._send(stand_in.answer)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture
def webserver() -> Iterator[StandIn]:
    stand_in = StandIn()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def _launch(webserver: StandIn, launched: dict) -> str | None:
    webserver.answer = json.dumps({"data": {"launchPipelineExecution": launched}}).encode()
    return launch_through_webserver(webserver.url, "process_slide", {"dagster/partition": "alice/main/s1"})


def test_a_launch_sends_the_job_and_tags_and_returns_the_run_id(webserver):
    assert _launch(webserver, {"__typename": "LaunchRunSuccess", "run": {"runId": "r-1"}}) == "r-1"
    [request] = webserver.requests
    assert request["query"] == LAUNCH_RUN
    params = request["variables"]["params"]
    assert params["selector"]["pipelineName"] == "process_slide"
    assert params["executionMetadata"]["tags"] == [{"key": "dagster/partition", "value": "alice/main/s1"}]


def test_no_webserver_means_launch_another_way():
    assert launch_through_webserver("http://127.0.0.1:9", "process_slide", {}) is None


def test_a_refused_launch_says_the_first_line_of_the_reason(webserver):
    with pytest.raises(WebserverLaunchFailed) as refused:
        _launch(webserver, {"__typename": "PythonError", "message": "no such partition\nTraceback ..."})
    assert str(refused.value) == f"the webserver at {webserver.url} refused to launch process_slide: no such partition"
    with pytest.raises(WebserverLaunchFailed) as invalid:
        _launch(webserver, {"__typename": "RunConfigValidationInvalid", "errors": [{"message": "a"}, {"message": "b"}]})
    assert str(invalid.value).endswith("refused to launch process_slide: a; b")


def test_an_answer_without_data_says_the_errors(webserver):
    webserver.answer = json.dumps({"errors": [{"message": "syntax"}]}).encode()
    with pytest.raises(WebserverLaunchFailed) as failed:
        launch_through_webserver(webserver.url, "process_slide", {})
    assert str(failed.value) == f"the webserver at {webserver.url} did not launch process_slide: [{{'message': 'syntax'}}]"


def test_an_answer_that_is_not_json_says_the_launch_went_unanswered(webserver):
    webserver.answer = b"<html>log in</html>"
    with pytest.raises(WebserverLaunchFailed) as failed:
        launch_through_webserver(webserver.url, "process_slide", {})
    assert str(failed.value).startswith(f"the webserver at {webserver.url} did not answer the launch of process_slide: ")
