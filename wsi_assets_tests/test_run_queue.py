"""The run queue with a real dagster-daemon (and webserver), on SQLite and on PostgreSQL.

Runs arrive by three launch paths (upload sensor, `dagster job launch` with only
dagster/partition, and the UI's GraphQL launch of the asset job); the run records and step
events must show: branches serial and FIFO, per-user and global limits held, one gpu step at
a time. A run worker killed with SIGKILL must fail its run and free its branch in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets_tests.conftest import fixture_env
from wsi_assets.testing.dagster_services import (
    BIN,
    REPO,
    daemon_command,
    free_port,
    launch_over_graphql,
    running,
    service_env,
    wait_for_http,
    wait_until,
    webserver_command,
)

# Real daemon and webserver, hundreds of seconds: deselect with -m "not slow".
pytestmark = pytest.mark.slow

USERS = ("ana", "ben", "cy")
BRANCHES = ("main", "cohort-b")
USER_LIMIT, GLOBAL_LIMIT, GPU_LIMIT = 2, 4, 1
KILL_DETECTION_BOUND_S = 60  # run monitoring polls every 10 s; the daemon loop adds a few seconds
# "Materialize all" on a slide in the asset graph: every per-slide asset, slide_results (which
# publishes the run's result set) included.
ALL_ASSETS = [
    "slide_metadata",
    "tissue_mask",
    "cell_segmentation",
    "cell_classification",
    *(export.asset_name for export in EXPORT_FORMATS),
    "slide_results",
]


def _postgres_settings() -> dict[str, str] | None:
    names = ("WSI_PG_HOST", "WSI_PG_PORT", "WSI_PG_USER", "WSI_PG_PASSWORD")
    if not all(os.environ.get(n) for n in names):
        return None
    return {n: os.environ[n] for n in names}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def queue_services(request, tmp_path_factory):
    """A fresh instance of the given storage with the daemon and webserver running on it."""
    home = tmp_path_factory.mktemp(f"dagster_home_{request.param}")
    user_files = tmp_path_factory.mktemp(f"user_files_{request.param}")
    extra = {}
    if request.param == "sqlite":
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    else:
        settings = _postgres_settings()
        if settings is None:
            pytest.skip("PostgreSQL not configured (set WSI_PG_HOST, WSI_PG_PORT, WSI_PG_USER, WSI_PG_PASSWORD; .ci/run does)")
        import psycopg2

        database = f"wsi_test_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(
            host=settings["WSI_PG_HOST"],
            port=settings["WSI_PG_PORT"],
            user=settings["WSI_PG_USER"],
            password=settings["WSI_PG_PASSWORD"],
            dbname="postgres",
        )
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {database}")
        admin.close()
        extra = {**settings, "WSI_PG_DB": database}
        shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    env = service_env(home, user_files, extra)
    port = free_port()
    from dagster import DagsterInstance

    # The test process reads the same instance (PostgreSQL settings come from the environment),
    # for as long as this fixture lives; fixture_env restores the environment afterwards.
    with fixture_env(**extra):
        # Create the storage before the services start: SQLite schema set-up in several processes at once races.
        instance = DagsterInstance.from_config(str(home))
        with running(daemon_command(), env, home / "daemon.log"), running(webserver_command(port), env, home / "webserver.log"):
            wait_for_http(f"http://127.0.0.1:{port}/server_info")
            yield {
                "home": home,
                "user_files": user_files,
                "env": env,
                "port": port,
                "instance": instance,
                "storage": request.param,
            }
        instance.dispose()


@pytest.fixture(scope="module")
def tiny_slide(tmp_path_factory) -> Path:
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    path = tmp_path_factory.mktemp("tiny") / "tiny.svs"
    write_synthetic_slide(path, SyntheticSlideSpec(width=1500, height=1200, mpp=0.25, seed=5))
    return path


def _failure_messages(instance, run_id: str) -> list[str]:
    """What a failed run's log says went wrong, so a failing assertion shows the cause."""
    return [
        entry.dagster_event.event_specific_data.error.message.strip()[:300]
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.event_type_value == "STEP_FAILURE"
    ] or [
        entry.user_message[:300]
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ]


def _upload(user_files: Path, user: str, branch: str, stem: str, source: Path) -> None:
    folder = user_files / user / "inputs" / branch
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{stem}.part"
    shutil.copyfile(source, partial)
    partial.rename(folder / f"{stem}.svs")


def _launch_with_cli(env: dict, key: str) -> None:
    tags = json.dumps({"dagster/partition": key})
    subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "process_slide", "--tags", tags],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _submit_with_wsi_cli(env: dict, key: str) -> None:
    """The README's route: python -m wsi_assets.cli.submit (wraps `dagster job launch`)."""
    subprocess.run(
        [str(BIN / "python"), "-m", "wsi_assets.cli.submit", key], cwd=REPO, env=env, check=True, capture_output=True, timeout=300
    )


def test_submit_cli_refuses_a_slide_that_is_not_uploaded(queue_services):
    completed = subprocess.run(
        [str(BIN / "python"), "-m", "wsi_assets.cli.submit", "nobody/main/missing"],
        cwd=REPO,
        env=queue_services["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1].startswith("error: no uploaded slide for nobody/main/missing")


def _launch_like_the_ui(port: int, key: str) -> str:
    """What "Materialize" on a partition in the asset graph sends: the asset job, only dagster/partition."""
    return launch_over_graphql(port, "wsi_assets.definitions", "__ASSET_JOB", key, ALL_ASSETS)


def _all_run_ids(instance) -> list[str]:
    return [r.dagster_run.run_id for r in instance.get_run_records()]


def _finished(instance, run_ids) -> bool:
    from dagster import DagsterRunStatus, RunsFilter

    done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    return all(r.dagster_run.status in done for r in instance.get_run_records(RunsFilter(run_ids=run_ids)))


def _keep_to_postgres_where_configured(services: dict) -> None:
    """Skip the SQLite copy of a test of several minutes where PostgreSQL, the storage of shared
    deployments, is configured (as in CI, whose budget is 40 minutes); run it on SQLite elsewhere."""
    if services["storage"] == "sqlite" and _postgres_settings() is not None:
        pytest.skip("run on PostgreSQL, where it is configured")


def test_branches_run_serially_in_order_within_limits(queue_services, tiny_slide):
    # 9 runs through the daemon: one upload in each of 6 branches, then a second run of the same
    # slide in one branch of each user, one per launch path; 3 runs per user against a limit of 2,
    # up to 6 runnable against the global 4: ~5 minutes on 2 cores
    _keep_to_postgres_where_configured(queue_services)
    from dagster import RunsFilter

    from wsi_assets.testing.queue_audit import audit_queue, gpu_hold_spans, run_spans

    services, instance = queue_services, queue_services["instance"]
    for user in USERS:
        for branch in BRANCHES:
            _upload(services["user_files"], user, branch, "s1", tiny_slide)
    wait_until(lambda: len(_all_run_ids(instance)) >= 6, timeout=120, what="6 sensor runs submitted")
    _launch_with_cli(services["env"], "ana/main/s1")
    _submit_with_wsi_cli(services["env"], "ben/cohort-b/s1")
    _launch_like_the_ui(services["port"], "cy/main/s1")
    run_ids = _all_run_ids(instance)
    assert len(run_ids) == 9
    gpu_waiters: set[str] = set()  # runs seen tagged as waiting at the gpu pool (issue 30)

    def finished_noting_gpu_waits() -> bool:
        gpu_waiters.update(
            r.dagster_run.run_id for r in instance.get_run_records(RunsFilter(tags={"wsi/waiting_for": "gpu slot"}))
        )
        return _finished(instance, run_ids)

    wait_until(finished_noting_gpu_waits, timeout=900, interval=1, what="all runs finished")

    spans = run_spans(instance, run_ids)
    assert {s.status for s in spans} == {"SUCCESS"}, [
        (s.branch, s.status, _failure_messages(instance, s.run_id)) for s in spans if s.status != "SUCCESS"
    ]
    assert {s.branch for s in spans} == {f"{u}/{b}" for u in USERS for b in BRANCHES}, "every launch path must be tagged"
    gpu_holds = gpu_hold_spans(instance, run_ids)
    assert len(gpu_holds) == len(run_ids), "every run's segmentation must log its GPU slot"
    audit = audit_queue(spans, gpu_holds)
    assert audit.branch_overlaps == []
    assert audit.order_violations == []
    assert audit.max_runs_per_user <= USER_LIMIT
    assert audit.max_runs_in_all <= GLOBAL_LIMIT
    assert audit.max_gpu_steps <= GPU_LIMIT
    assert audit.max_runs_in_all >= 2, "branches should have run in parallel"
    # Up to 4 runs at once share 1 GPU slot: some started run waited at its segmentation step, visibly.
    assert gpu_waiters, "no run waiting for the gpu pool was tagged wsi/waiting_for: gpu slot"
    assert any(
        "waiting for a gpu slot" in (e.dagster_event.message or "")
        for r in gpu_waiters
        for e in instance.all_logs(r)
        if e.dagster_event
    ), "the wait is in the run's log"
    wait_until(
        lambda: not instance.get_run_records(RunsFilter(tags={"wsi/waiting_for": "gpu slot"})),
        timeout=30,
        interval=1,
        what="gpu wait tags cleared once the runs got their slot",
    )


def _worker_pid(instance, run_id: str) -> int:
    from wsi_assets.queue.dagster_adapter import run_worker_pid

    return run_worker_pid(instance, run_id)[0]


def _in_segmentation(instance, run_id: str) -> bool:
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == "cell_segmentation" for r in records)


def _kill_tree(pid: int) -> None:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_worker_fails_its_run_and_frees_its_branch(queue_services, tiny_slide, tmp_path):
    _keep_to_postgres_where_configured(queue_services)
    from dagster import DagsterRunStatus

    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    services, instance = queue_services, queue_services["instance"]
    big = tmp_path / "big.svs"
    # ~30 tiles of segmentation at the model's resolution: time enough to kill the worker inside it
    write_synthetic_slide(big, SyntheticSlideSpec(width=12000, height=9000, mpp=0.25, seed=9))
    before = set(_all_run_ids(instance))
    _upload(services["user_files"], "dee", "crash", "big", big)
    first = wait_until(lambda: list(set(_all_run_ids(instance)) - before), timeout=120, what="sensor run for the big slide")[0]
    # The branch's next run only has to start and succeed: a small slide (the big one took minutes more).
    _upload(services["user_files"], "dee", "crash", "next", tiny_slide)
    second = wait_until(lambda: list(set(_all_run_ids(instance)) - before - {first}), timeout=120, what="second run queued")[0]
    wait_until(lambda: _in_segmentation(instance, first), timeout=300, interval=0.2, what="first run inside segmentation")
    pid = _worker_pid(instance, first)
    assert instance.get_run_by_id(first).status == DagsterRunStatus.STARTED, "the run ended before the kill: use a bigger slide"
    _kill_tree(pid)
    killed_at = time.time()

    wait_until(
        lambda: instance.get_run_by_id(first).status == DagsterRunStatus.FAILURE,
        timeout=KILL_DETECTION_BOUND_S,
        interval=0.5,
        what=f"killed run marked failed within {KILL_DETECTION_BOUND_S} s",
    )
    detected_s = time.time() - killed_at
    wait_until(lambda: instance.get_run_by_id(second).status != DagsterRunStatus.QUEUED, timeout=60, what="branch freed")
    wait_until(lambda: _finished(instance, [second]), timeout=300, interval=2, what="next run finished")
    assert instance.get_run_by_id(second).status == DagsterRunStatus.SUCCESS
    print(f"killed worker detected after {detected_s:.1f} s")


def _hold_in_progress(instance, partition: str) -> str:
    """A run record in progress with no worker: it holds its branch, user and global slot, so the
    queue behind it stands still while the test reads it (the daemon's monitor sees no worker pid yet)."""
    from dagster import DagsterRun, DagsterRunStatus

    user, branch, _ = partition.split("/")
    run_id = str(uuid.uuid4())
    tags = {"dagster/partition": partition, "wsi/user": user, "wsi/branch": f"{user}/{branch}"}
    instance.add_run(DagsterRun(job_name="process_slide", run_id=run_id, status=DagsterRunStatus.STARTED, tags=tags))
    return run_id


def _place_tags_match_the_records(instance, expected_ids: set[str]):
    """The daemon's sensor has tagged every queued run as the run records say; the places, or None."""
    from wsi_assets.queue.dagster_adapter import read_queue
    from wsi_assets.queue.positions import place_tags, queue_places

    places = queue_places(*read_queue(instance))
    if {p.run.run_id for p in places} != expected_ids:
        return None
    return places if all(all(p.run.tags.get(k) == v for k, v in place_tags(p).items()) for p in places) else None


def _cli_without_dagster(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """`python -m <argv>` with a webserver to ask: it must succeed without importing Dagster (what makes it slow)."""
    done = subprocess.run(
        [str(BIN / "python"), "-X", "importtime", "-m", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert done.returncode == 0, [line for line in done.stderr.splitlines() if not line.startswith("import time:")][-20:]
    assert not [name for name in imported if name.split(".")[0] in ("dagster", "dagster_graphql")], f"{argv[0]} imported Dagster"
    return done


RUN_LOG = """
query Log($runId: ID!) {
  logsForRun(runId: $runId) { __typename ... on EventConnection { events { __typename ... on MessageEvent { message } } } }
}
"""


def _run_logs_show_places(port: int, instance, places) -> None:
    """Each queued run's own log ends with its current place, once; the run's page reads it over GraphQL as here."""
    from wsi_assets.queue.positions import place_message
    from wsi_assets.queue.webserver_view import post_graphql

    def latest_lines():
        lines = {}
        for place in places:
            log = [
                e.dagster_event.message
                for e in instance.all_logs(place.run.run_id)
                if e.dagster_event and (e.dagster_event.message or "").startswith("Queued: ")
            ]
            lines[place.run.run_id] = log[-1] if log else None
        return lines if all(lines[p.run.run_id] == place_message(p) for p in places) else None

    wait_until(latest_lines, timeout=30, interval=1, what="each queued run's log ends with its place")
    first = places[0]
    events = post_graphql(f"http://127.0.0.1:{port}", RUN_LOG, {"runId": first.run.run_id})["logsForRun"]["events"]
    assert place_message(first) in [event.get("message") for event in events], (
        "the run's page (its log over GraphQL) shows its place"
    )
    assert place_message(first).startswith(
        "Queued: 1st in line, 1st in branch ana/main; waiting for: branch busy (an earlier run of ana/main"
    )


def _gpu_waits_read_alike(url: str, instance) -> None:
    """Started runs waiting for a `gpu` slot come out of the webserver's answer as out of the instance."""
    from wsi_assets.cli.queue import current_gpu_waits, instance_snapshot
    from wsi_assets.queue.webserver_view import read_queue_from_webserver

    storage = instance.event_log_storage
    holders = [
        r.dagster_run.run_id
        for r in instance.get_run_records()
        if r.dagster_run.tags.get("dagster/partition", "").endswith("/hold")
    ]
    assert storage.claim_concurrency_slot("gpu", holders[0], "cell_segmentation").is_claimed
    assert not storage.claim_concurrency_slot("gpu", holders[1], "cell_segmentation").is_claimed
    waits = current_gpu_waits(instance_snapshot(instance))
    assert [(w.run_id, w.position, w.waiters) for w, _ in waits] == [(holders[1], 1, 1)]
    # Compared without the tags: the sensor is tagging the waiting run meanwhile.
    assert [(w, r.run_id, r.job) for w, r in current_gpu_waits(read_queue_from_webserver(url))] == [
        (w, r.run_id, r.job) for w, r in waits
    ]


def _show_places_while_the_queue_stands_still(services, instance, tiny_slide, order: list[str]) -> None:
    keys = ["ana/main/q1", "ana/cohort-q/q1", "ben/cohort-q/q1", "ben/cohort-q/q2", "dan/main/q1"]
    instance.add_dynamic_partitions("slides", [k for k in keys if not instance.has_dynamic_partition("slides", k)])
    order += [launch_over_graphql(services["port"], "wsi_assets.definitions", "process_slide", key) for key in keys]
    before = set(_all_run_ids(instance))
    _upload(services["user_files"], "eve", "main", "tiny", tiny_slide)
    order += wait_until(lambda: list(set(_all_run_ids(instance)) - before), timeout=60, what="upload sensor queued eve's slide")
    env = {**services["env"], "WSI_WEBSERVER_URL": f"http://127.0.0.1:{services['port']}/"}
    started = time.perf_counter()
    submitted = _cli_without_dagster(["wsi_assets.cli.submit", "eve/main/tiny"], env)
    print(f"submit through the webserver: {time.perf_counter() - started:.1f} s")
    run_line, url_line, queue_line = submitted.stdout.strip().splitlines()[-3:]
    submit_run = run_line.removeprefix("run ")
    order.append(submit_run)
    assert instance.get_run_by_id(submit_run).tags["dagster/partition"] == "eve/main/tiny"
    assert url_line == f"url http://127.0.0.1:{services['port']}/runs/{submit_run}"
    assert queue_line == "queue: position 7 of 7, 2 in its branch, waiting for: branch busy"
    places = wait_until(
        lambda: _place_tags_match_the_records(instance, set(order)),
        timeout=30,
        interval=1,
        what="queue tags written by the sensor",
    )
    assert [(p.run.run_id, p.position, p.branch_position, p.waiting_for) for p in places] == [
        (order[0], 1, 1, "branch busy"),  # ana/main has a run in progress
        (order[1], 2, 1, "user limit"),  # ana has 2 runs in progress
        (order[2], 3, 1, "global limit"),  # 4 runs in progress in all
        (order[3], 4, 2, "branch busy"),  # behind ben/cohort-q's first run
        (order[4], 5, 1, "global limit"),
        (order[5], 6, 1, "global limit"),
        (order[6], 7, 2, "branch busy"),
    ]
    from wsi_assets.cli.queue import instance_snapshot
    from wsi_assets.queue.positions import queue_places
    from wsi_assets.queue.webserver_view import read_queue_from_webserver

    over_graphql = read_queue_from_webserver(env["WSI_WEBSERVER_URL"])

    def seen(place):  # `order` is the storage's row id in one read and the answer's order in the other
        return place.run.run_id, place.run.job, place.run.created_at, place.position, place.branch_position, place.waiting_for

    read_over_graphql = queue_places(over_graphql.queued, over_graphql.in_progress, over_graphql.limits)
    assert [seen(p) for p in read_over_graphql] == [seen(p) for p in places], (
        "the webserver's answer places runs as the instance does"
    )
    assert over_graphql.limits == instance_snapshot(instance).limits
    _run_logs_show_places(services["port"], instance, places)
    from wsi_assets.defs.queue_status import refresh_queue_tags

    started = time.perf_counter()
    assert refresh_queue_tags(instance) == (0, 0), "a tick over an unchanged queue writes nothing"
    print(f"queue tag refresh over {len(places)} queued runs: {time.perf_counter() - started:.3f} s")
    started = time.perf_counter()
    table = _cli_without_dagster(["wsi_assets.cli.queue", "--user", "ben"], env)
    print(f"queue table: {time.perf_counter() - started:.1f} s")
    print(submitted.stdout, table.stdout, sep="\n")
    lines = table.stdout.strip().splitlines()
    assert lines[0] == "7 runs queued, 4 in progress; showing 2"
    assert [line.split()[:8] for line in lines[2:]] == [
        [order[2], "ben", "ben/cohort-q", "ben/cohort-q/q1", "process_slide", "3", "1", "global"],
        [order[3], "ben", "ben/cohort-q", "ben/cohort-q/q2", "process_slide", "4", "2", "branch"],
    ]
    _gpu_waits_read_alike(env["WSI_WEBSERVER_URL"], instance)  # last: the claimed slot changes the places


def test_queued_runs_show_their_place_and_what_they_wait_for(queue_services, tiny_slide):
    from wsi_assets.queue.positions import PLACE_TAGS

    services, instance = queue_services, queue_services["instance"]
    # Global limit 4: ana at her user limit (one run on main), ben's and cy's main branches busy.
    holders = [_hold_in_progress(instance, key) for key in ("ana/main/hold", "ana/hold/hold", "ben/main/hold", "cy/main/hold")]
    order: list[str] = []  # the queued runs, in submission order
    try:
        _show_places_while_the_queue_stands_still(services, instance, tiny_slide, order)
    finally:
        for run_id in order:
            instance.report_run_canceled(instance.get_run_by_id(run_id))
        for run_id in holders:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)  # the next tests' runs need the gpu slot
            instance.report_run_failed(instance.get_run_by_id(run_id))
    wait_until(
        lambda: not any(k in instance.get_run_by_id(r).tags for r in order for k in PLACE_TAGS),
        timeout=30,
        interval=1,
        what="queue tags cleared once the runs left the queue",
    )


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!, $after: Float) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(afterTimestamp: $after, limit: 100) { status timestamp endTimestamp error { message } } } }
  }
}
"""


def _sensor_ticks(port: int, sensor: str, after: float) -> list[dict]:
    import urllib.request

    selector = {"repositoryLocationName": "wsi_assets.definitions", "repositoryName": "__repository__", "sensorName": sensor}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": SENSOR_TICKS, "variables": {"selector": selector, "after": after}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["data"]["sensorOrError"]["sensorState"]["ticks"]


def test_a_hostile_review_and_a_large_slides_csv_delay_no_other_upload(queue_services, tiny_slide):
    # Issue 29: parsing reviews inside the tick failed every tick (deep JSON: RecursionError) or
    # outran Dagster's 60 s sensor timeout (a 140 MB review: 219 s), and no user's upload was requested.
    _keep_to_postgres_where_configured(queue_services)
    from dagster import RunsFilter

    from wsi_assets.testing import hostile_files

    services, instance = queue_services, queue_services["instance"]
    started = time.time()
    reviews = services["user_files"] / "mallory" / "reviews" / "main"
    hostile_files.deep_json(reviews / "deep.geojson")
    hostile_files.big_slides_csv(reviews / "slides.csv", 9.9)
    # The other cases of the issue, present at the same time in mallory's other branches.
    hostile_files.huge_csv_field(services["user_files"] / "mallory" / "reviews" / "wide" / "slides.csv")
    hostile_files.one_polygon_review(reviews / "spiky.geojson")
    inputs = services["user_files"] / "mallory" / "inputs"
    hostile_files.many_pages_tiff(inputs / "pages" / "pages.tif")
    hostile_files.tiff_bomb(inputs / "planes" / "huge.ome.tif")
    (inputs / "laughs").mkdir(parents=True)
    (inputs / "laughs" / "branch.yaml").write_text(
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
    )
    (inputs / "twice").mkdir()
    (inputs / "twice" / "branch.yaml").write_text("mpp: 0.5\nmpp: 7\n")
    (inputs / "main").mkdir(exist_ok=True)
    (inputs / "main" / "[x](http:evil.example)![i](http:evil.example).svs").write_bytes(b"not a slide")
    status = services["user_files"] / "mallory" / "outputs" / "upload_status.json"
    # A tick has looked at both files: the upload status lists them, waiting for their import.
    wait_until(lambda: status.is_file() and "deep.geojson" in status.read_text(), timeout=90, what="mallory's status written")

    uploaded = time.time()
    _upload(services["user_files"], "dora", "main", "good", tiny_slide)
    records = wait_until(
        lambda: instance.get_run_records(RunsFilter(tags={"dagster/partition": "dora/main/good"})),
        timeout=120,
        interval=0.5,
        what="dora's run requested",
    )
    created = records[0].create_timestamp.timestamp() + 1  # SQLite keeps whole seconds; ticks are 10 s apart
    # Two looks make a file stable: the tick that requested the run is at most the second to start after the upload.
    looks = [t for t in _sensor_ticks(services["port"], "upload_sensor", uploaded) if t["timestamp"] <= created]
    assert len(looks) <= 2, f"dora's slide was requested at the {len(looks)}th tick after its upload ({created - uploaded:.0f} s)"
    for sensor in ("upload_sensor", "review_sensor"):
        ticks = _sensor_ticks(services["port"], sensor, started)
        assert ticks and not [t for t in ticks if t["status"] == "FAILURE"], (sensor, ticks)
        longest = max((t["endTimestamp"] or time.time()) - t["timestamp"] for t in ticks)
        assert longest < 15, f"a {sensor} tick took {longest:.0f} s"
    files = {f["path"]: f for f in json.loads(status.read_text())["files"]}
    assert files["mallory/reviews/main/deep.geojson"]["state"] in ("waiting", "skipped"), files
