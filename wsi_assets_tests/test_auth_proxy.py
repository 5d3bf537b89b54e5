"""deploy/auth: real nginx in front of a read-only and a full Dagster webserver on one instance.

Nobody gets in without a password, viewers cannot launch, operators can, and what they launch
carries their name. The launched run only queues (no daemon here): the run coordinator stores
its tags at submission.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from argparse import Namespace

import pytest

from wsi_assets.cli.auth_files import ROLES_FILE, USERS_FILE, AuthFileError, add_user, check_auth_files, read_roles, read_users
from wsi_assets.cli.auth_proxy import find_nginx, nginx_command, prepare, reload_running_nginx
from wsi_assets.queue.launched_by import LAUNCHED_BY_TAG, InvalidProxyUser, launched_by_tags
from wsi_assets_tests.conftest import fixture_env
from wsi_assets.testing.dagster_services import BIN, REPO, free_port, running, service_env

PASSWORDS = {"olga": "operator-pw", "victor": "viewer-pw", "nora": "no-role-pw"}
SLIDE = "lab/main/slide1"
# launchRun is the current name; the UI's launchpad still sends launchPipelineExecution.
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  MUTATION(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""
BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""


def nginx_binary() -> str:
    found = os.environ.get("WSI_NGINX") or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found and os.path.exists(found):
        return found
    if os.environ.get("WSI_NGINX"):
        pytest.fail(f"WSI_NGINX={os.environ['WSI_NGINX']} does not exist (.ci/start_nginx.sh installs nginx)")
    pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does)")


def request(
    port: int, path: str, user: str | None = None, body: dict | None = None, headers: dict | None = None
) -> tuple[int, str]:
    """(status, body) of one request through the proxy, as `user` with the right password."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if user is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{user}:{PASSWORDS.get(user, 'wrong')}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=sent), timeout=120
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except urllib.error.URLError as error:  # nothing listening yet
        return 0, str(error.reason)


def websocket_status(port: int, user: str, origin: str | None = None) -> int:
    """The status line's code of a GraphQL websocket handshake (101: open), as the UI makes it."""
    import socket

    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /graphql HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: graphql-ws",
        "Authorization: Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode(),
    ] + ([f"Origin: {origin}"] if origin else [])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(connection.recv(4096).split(b" ", 2)[1])


def launch(
    port: int, user: str, tags: dict | None = None, headers: dict | None = None, mutation: str = "launchRun"
) -> tuple[int, dict | str]:
    params = {
        "selector": {
            "repositoryLocationName": "wsi_assets.definitions",
            "repositoryName": "__repository__",
            "pipelineName": "tissue_mask_only",
        },
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in {"dagster/partition": SLIDE, **(tags or {})}.items()]},
    }
    status, text = request(
        port, "/graphql", user, {"query": LAUNCH.replace("MUTATION", mutation), "variables": {"params": params}}, headers
    )
    return status, (json.loads(text)["data"][mutation] if status == 200 else text)


def wait_for_backends(port: int, process, log, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    waiting = {"olga", "victor"}
    while waiting and time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"deploy/auth/start.sh exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        waiting = {user for user in waiting if request(port, "/server_info", user)[0] != 200}
        time.sleep(1)
    assert not waiting, (
        f"webservers for {waiting} did not answer through the proxy within {timeout} s:\n{log.read_text()[-3000:]}"
    )
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    entries = json.loads(request(port, "/graphql", "olga", {"query": query})[1])["data"]["workspaceOrError"]["locationEntries"]
    broken = [
        entry["locationOrLoadError"] for entry in entries if entry["locationOrLoadError"]["__typename"] != "RepositoryLocation"
    ]
    assert entries and not broken, f"the code location did not load: {broken}"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    nginx = nginx_binary()
    home = tmp_path_factory.mktemp("auth_home")
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    auth = home / "auth"
    add_user(auth, "olga", "operator", PASSWORDS["olga"])
    add_user(auth, "victor", "viewer", PASSWORDS["victor"])
    add_user(auth, "nora", "viewer", PASSWORDS["nora"])
    (auth / ROLES_FILE).write_text(
        "".join(line + "\n" for line in (auth / ROLES_FILE).read_text().splitlines() if not line.startswith("nora"))
    )
    port = free_port()
    env = service_env(
        home,
        tmp_path_factory.mktemp("auth_user_files"),
        {"WSI_NGINX": nginx, "WSI_AUTH_DIR": str(auth), "WSI_VENV": str(BIN.parent)},
    )
    command = [
        "bash",
        "deploy/auth/start.sh",
        "--listen",
        f"127.0.0.1:{port}",
        "--viewer-port",
        str(free_port()),
        "--operator-port",
        str(free_port()),
        "--no-daemon",
    ]
    from dagster import DagsterInstance

    with fixture_env(DAGSTER_HOME=str(home)):
        instance = DagsterInstance.get()
        # A dynamic partition must exist before a run of it can be launched.
        instance.add_dynamic_partitions("slides", [SLIDE])
        with running(command, env, home / "start.log") as process:
            wait_for_backends(port, process, home / "start.log")
            yield {"port": port, "instance": instance, "home": home}
        instance.dispose()


@pytest.mark.slow
def test_nobody_gets_in_without_a_password(proxy):
    port = proxy["port"]
    assert request(port, "/")[0] == 401
    assert request(port, "/graphql", body={"query": "{ version }"})[0] == 401
    assert request(port, "/server_info", "mallory")[0] == 401  # unknown user
    assert request(port, "/server_info", headers={"Authorization": "Basic " + base64.b64encode(b"olga:guess").decode()})[0] == 401
    # A password but no role: in, but routed nowhere; until add-user gives a role to the running proxy.
    assert request(port, "/server_info", "nora")[0] == 403
    add_user(proxy["home"] / "auth", "nora", "viewer", PASSWORDS["nora"])
    reload_running_nginx(proxy["home"] / "auth" / "nginx")
    deadline = time.time() + 30
    while request(port, "/server_info", "nora")[0] != 200 and time.time() < deadline:
        time.sleep(0.5)
    assert request(port, "/server_info", "nora")[0] == 200


@pytest.mark.slow
def test_a_viewer_cannot_launch_a_run(proxy):
    before = len(proxy["instance"].get_run_records())
    for mutation in ("launchRun", "launchPipelineExecution"):
        status, result = launch(proxy["port"], "victor", mutation=mutation)
        assert status == 200 and result["__typename"] == "UnauthorizedError", result
    assert len(proxy["instance"].get_run_records()) == before
    # ... but sees the UI, the runs, and live updates (GraphQL subscriptions over a websocket).
    status, page = request(proxy["port"], "/", "victor", headers={"Accept": "text/html"})
    assert status == 200 and "<html" in page.lower()
    assert request(proxy["port"], "/graphql", "victor", {"query": "{ runsOrError { __typename } }"})[0] == 200
    assert websocket_status(proxy["port"], "victor", origin=f"http://127.0.0.1:{proxy['port']}") == 101


@pytest.mark.slow
def test_an_operator_launch_is_tagged_with_the_operator(proxy):
    # Neither a forged header nor a forged tag changes who launched it.
    status, result = launch(proxy["port"], "olga", tags={LAUNCHED_BY_TAG: "victor"}, headers={"X-WSI-User": "victor"})
    assert status == 200 and result["__typename"] == "LaunchRunSuccess", result
    run = proxy["instance"].get_run_by_id(result["run"]["runId"])
    assert run.tags[LAUNCHED_BY_TAG] == "olga"
    assert run.tags["user"] == "olga"  # Dagster's UI shows this tag as "Launched by"
    assert run.tags["wsi/user"] == "lab"  # the queue's own tags are still derived


@pytest.mark.slow
def test_an_operator_backfill_is_tagged_with_the_operator(proxy):
    params = {
        "assetSelection": [{"path": ["slide_metadata"]}],
        "partitionNames": [SLIDE],
        "tags": [{"key": LAUNCHED_BY_TAG, "value": "victor"}],
    }
    status, text = request(proxy["port"], "/graphql", "olga", {"query": BACKFILL, "variables": {"params": params}})
    result = json.loads(text)["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    assert proxy["instance"].get_backfill(result["backfillId"]).tags[LAUNCHED_BY_TAG] == "olga"


@pytest.mark.slow
def test_a_foreign_page_cannot_use_a_saved_password(proxy):
    port = proxy["port"]
    assert launch(port, "olga", headers={"Origin": "http://evil.example"})[0] == 403
    get = "/graphql?query=" + urllib.request.quote("mutation { wipeAssets(assetPartitionRanges: []) { __typename } }")
    assert request(port, get, "olga")[0] == 403
    assert websocket_status(port, "olga", origin="http://evil.example") == 403
    assert launch(port, "olga", headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200  # the UI's own page


@pytest.mark.slow
def test_a_second_proxy_on_the_same_files_is_refused(proxy):
    args = Namespace(
        auth_dir=str(proxy["home"] / "auth"),
        listen="127.0.0.1:1",
        viewer_port=1,
        operator_port=2,
        tls_cert=None,
        tls_key=None,
        insecure_http=False,
        daemon=False,
    )
    with fixture_env(DAGSTER_HOME=str(proxy["home"])), pytest.raises(AuthFileError, match="a proxy already runs from"):
        prepare(args)


def test_proxy_user_names_are_checked():
    assert launched_by_tags("olga") == {LAUNCHED_BY_TAG: "olga", "user": "olga"}
    assert launched_by_tags(None) == {}
    with pytest.raises(InvalidProxyUser, match="not a user name"):
        launched_by_tags("olga\nwsi/user: other")


def test_users_and_roles_files_are_checked(tmp_path):
    add_user(tmp_path, "olga", "operator", "pw1")
    add_user(tmp_path, "olga", "viewer", "pw2")  # changes the role, keeps one line
    assert read_users(tmp_path / USERS_FILE) == ["olga"] and read_roles(tmp_path / ROLES_FILE) == {"olga": "viewer"}
    assert check_auth_files(tmp_path) == []
    with pytest.raises(AuthFileError, match="role 'admin' is not one of viewer, operator"):
        add_user(tmp_path, "ann", "admin", "pw")
    (tmp_path / ROLES_FILE).write_text("olga viewer;\nOlga operator;\n")
    with pytest.raises(AuthFileError, match="line 2: user 'Olga' is listed and 'olga', which differs only in case"):
        read_roles(tmp_path / ROLES_FILE)
    (tmp_path / USERS_FILE).write_text("olga:plaintext\n")
    with pytest.raises(AuthFileError, match="line 1: the password is not hashed"):
        read_users(tmp_path / USERS_FILE)


def test_rendered_config_with_tls_passes_nginx_check(tmp_path):
    nginx = nginx_binary()
    add_user(tmp_path / "auth", "olga", "operator", "pw")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    args = Namespace(
        auth_dir=str(tmp_path / "auth"),
        listen="0.0.0.0:8443",
        viewer_port=3001,
        operator_port=3002,
        tls_cert=str(cert),
        tls_key=str(key),
        insecure_http=False,
        daemon=False,
    )
    with fixture_env(DAGSTER_HOME=str(tmp_path), WSI_NGINX=nginx):
        settings, _ = prepare(args)
        runtime = settings.runtime_dir
        checked = subprocess.run([*nginx_command(find_nginx(), runtime), "-t"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert "listen 0.0.0.0:8443 ssl;" in (runtime / "nginx.conf").read_text()
        with pytest.raises(AuthFileError, match="reachable from other machines"):
            prepare(Namespace(**{**vars(args), "tls_cert": None, "tls_key": None}))
