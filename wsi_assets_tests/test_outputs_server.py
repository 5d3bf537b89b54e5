"""Result files over HTTP: a report link opens with one click, and nothing but a user's outputs is served."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

import pytest

from wsi_assets.cli.outputs_server import make_server
from wsi_assets.results.served_outputs import OUTPUTS_URL_ENV, output_link


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "user_files"
    published = root / "alice" / "outputs" / "main" / ".sets" / "s1" / "run1"
    published.mkdir(parents=True)
    (published / "report.html").write_text("<html>alice's report</html>")
    (root / "alice" / "outputs" / "main" / "s1").symlink_to(published)  # the published link, as result sets make it
    (root / "alice" / "inputs").mkdir()
    (root / "alice" / "inputs" / "slide.svs").write_bytes(b"slide")
    (root / "bob" / "outputs" / "main").mkdir(parents=True)
    (root / "bob" / "outputs" / "main" / "secret.csv").write_text("bob's cells")
    (root / "alice" / "outputs" / "main" / "to_bob.csv").symlink_to(root / "bob" / "outputs" / "main" / "secret.csv")
    servers = []

    def start(user_header=None):
        server = make_server(root, "127.0.0.1", 0, user_header)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield root, start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("Content-Type")
    except urllib.error.HTTPError as error:
        return error.code, "", None


def test_a_published_report_is_served_through_the_slide_link(served):
    root, start = served
    base = start()
    status, body, kind = _get(f"{base}/alice/outputs/main/s1/report.html")
    assert (status, body, kind) == (200, "<html>alice's report</html>", "text/html")


@pytest.mark.parametrize(
    "path",
    [
        "/alice/inputs/slide.svs",  # uploads are not results
        "/alice/outputs/main/to_bob.csv",  # a link into another user's folder
        "/alice/outputs/../../bob/outputs/main/secret.csv",
        "/alice/outputs/main/%2e%2e/%2e%2e/%2e%2e/bob/outputs/main/secret.csv",
        "/alice/outputs/main/",  # no folder listings
        "/alice/outputs/main/s1/missing.html",
        "/..%2f..%2fetc/outputs/passwd",
    ],
)
def test_nothing_but_the_users_own_result_files_is_served(served, path):
    _, start = served
    status, body, _ = _get(start() + path)
    assert status == 404 and "bob" not in body


def test_behind_the_proxy_a_user_reaches_only_their_own_results(served):
    _, start = served
    base = start(user_header="X-Forwarded-User")
    url = f"{base}/alice/outputs/main/s1/report.html"
    assert _get(url, {"X-Forwarded-User": "alice"})[0] == 200
    assert _get(url, {"X-Forwarded-User": "bob"})[0] == 403
    assert _get(url)[0] == 403


def test_report_links_are_http_when_outputs_are_served_else_file_uris(tmp_path, monkeypatch):
    report = tmp_path / "alice" / "outputs" / "main" / "slide 1" / "report.html"
    monkeypatch.delenv(OUTPUTS_URL_ENV, raising=False)
    assert output_link(tmp_path, report) == report.absolute().as_uri()
    monkeypatch.setenv(OUTPUTS_URL_ENV, "http://127.0.0.1:3001/")
    assert output_link(tmp_path, report) == "http://127.0.0.1:3001/alice/outputs/main/slide%201/report.html"
    assert os.environ[OUTPUTS_URL_ENV]  # monkeypatch restores it
