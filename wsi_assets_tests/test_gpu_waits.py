"""Runs that wait, in their tags and their own log (issue 30): started runs waiting for a `gpu` pool
slot, and queued runs' places.

Pure ordering on constructed steps, then a real SQLite instance whose `gpu` pool Dagster's own
claim API fills: one step holds the slot, two wait; and queued run records the sensor places.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from wsi_assets_tests.conftest import fixture_env

from wsi_assets.queue.positions import (
    GPU_POSITION_TAG,
    GpuWait,
    PendingStep,
    changed_gpu_wait_tags,
    gpu_waits,
)

REPO = Path(__file__).resolve().parents[1]


def test_waiters_are_placed_in_the_order_dagster_hands_out_slots():
    pending = [
        PendingStep("late", "cell_segmentation", 30.0),
        PendingStep("early", "cell_segmentation", 10.0),
        PendingStep("urgent", "cell_segmentation", 40.0, priority=5),
        PendingStep("assigned", "cell_segmentation", 50.0, assigned=True),
        PendingStep("early", "other_gpu_step", 5.0),  # the same run again: placed once, by its first step
    ]
    assert gpu_waits(pending) == [
        GpuWait("assigned", "cell_segmentation", 1, 4),
        GpuWait("urgent", "cell_segmentation", 2, 4),
        GpuWait("early", "other_gpu_step", 3, 4),
        GpuWait("late", "cell_segmentation", 4, 4),
    ]
    assert gpu_waits([]) == []


def test_only_changed_wait_tags_are_written():
    waits = gpu_waits([PendingStep("a", "s", 1.0), PendingStep("b", "s", 2.0)])
    current = {
        "a": {"wsi/waiting_for": "gpu slot", GPU_POSITION_TAG: "1"},
        "b": {"wsi/waiting_for": "next", "wsi/queue_position": "3"},
    }
    assert changed_gpu_wait_tags(waits, current) == {"b": {"wsi/waiting_for": "gpu slot", GPU_POSITION_TAG: "2"}}


@pytest.fixture(scope="module")
def shared_instance(tmp_path_factory):
    from dagster import DagsterInstance

    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    # The queue command opens it too, through $DAGSTER_HOME; with no webserver to ask, it reads the instance.
    with fixture_env(DAGSTER_HOME=str(home.resolve()), WSI_WEBSERVER_URL=""), DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        yield instance


@pytest.fixture
def instance(shared_instance):
    from dagster import DagsterRunStatus

    yield shared_instance
    for record in shared_instance.get_run_records():  # each test starts with a free pool and no runs queued or in progress
        shared_instance.event_log_storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
        if record.dagster_run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.QUEUED):
            shared_instance.report_run_canceled(record.dagster_run)


def _started_run(instance, partition: str) -> str:
    from dagster import DagsterRun, DagsterRunStatus

    user, branch, _ = partition.split("/")
    run_id = str(uuid.uuid4())
    tags = {
        "dagster/partition": partition,
        "wsi/user": user,
        "wsi/branch": f"{user}/{branch}",
        "wsi/waiting_for": "next",
        "wsi/queue_position": "1",
    }
    instance.add_run(DagsterRun(job_name="process_slide", run_id=run_id, status=DagsterRunStatus.STARTED, tags=tags))
    return run_id


def _log(instance, run_id: str) -> list[str]:
    return [entry.dagster_event.message if entry.dagster_event else entry.user_message for entry in instance.all_logs(run_id)]


def test_sensor_tags_and_logs_runs_waiting_for_the_gpu_and_clears_them_once_they_hold_it(instance, capsys):
    import time

    from wsi_assets.cli.queue import current_gpu_waits, instance_snapshot
    from wsi_assets.defs.queue_status import refresh_queue_tags

    storage = instance.event_log_storage
    holder, first, second = (_started_run(instance, f"{user}/main/s1") for user in ("ana", "ben", "cy"))
    assert storage.claim_concurrency_slot("gpu", holder, "cell_segmentation").is_claimed
    for run_id in (first, second):
        assert not storage.claim_concurrency_slot("gpu", run_id, "cell_segmentation").is_claimed
        time.sleep(1.1)  # distinct enqueue times: the storage keeps whole seconds

    refresh_queue_tags(instance)
    tags = {run_id: instance.get_run_by_id(run_id).tags for run_id in (holder, first, second)}
    assert tags[first]["wsi/waiting_for"] == "gpu slot" and tags[first][GPU_POSITION_TAG] == "1"
    assert tags[second]["wsi/waiting_for"] == "gpu slot" and tags[second][GPU_POSITION_TAG] == "2"
    assert "wsi/queue_position" not in tags[first], "a started run has no place in the run queue any more"
    assert "wsi/waiting_for" not in tags[holder], "the step holding the slot waits for nothing"
    assert any("cell_segmentation is waiting for a gpu slot: 2 of 2 waiting" in m for m in _log(instance, second))
    assert [(w.run_id, w.position) for w, _ in current_gpu_waits(instance_snapshot(instance))] == [(first, 1), (second, 2)]
    logged = len(_log(instance, second))
    refresh_queue_tags(instance)
    assert len(_log(instance, second)) == logged, "an unchanged place is not logged again"

    # The holder's step ends: Dagster assigns the slot to the first waiter, which claims it.
    storage.free_concurrency_slot_for_step(holder, "cell_segmentation")
    assert storage.claim_concurrency_slot("gpu", first, "cell_segmentation").is_claimed
    refresh_queue_tags(instance)
    tags = {run_id: instance.get_run_by_id(run_id).tags for run_id in (first, second)}
    assert "wsi/waiting_for" not in tags[first] and GPU_POSITION_TAG not in tags[first]
    assert "no longer waiting for a gpu slot" in _log(instance, first)
    assert tags[second][GPU_POSITION_TAG] == "1"
    assert any("1 of 1 waiting" in m for m in _log(instance, second)), "a change of place goes in the run's log"


def test_queue_command_lists_runs_waiting_for_the_gpu(instance, capsys):
    from wsi_assets.cli.queue import main

    storage = instance.event_log_storage
    holder, waiter = _started_run(instance, "ana/main/s1"), _started_run(instance, "ben/b/s1")
    storage.claim_concurrency_slot("gpu", holder, "cell_segmentation")
    storage.claim_concurrency_slot("gpu", waiter, "cell_segmentation")
    main([])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("0 runs queued, 2 in progress")
    assert lines[1] == "1 started runs waiting for a gpu slot; showing 1"
    assert lines[3].split() == [
        waiter,
        "ben",
        "ben/b",
        "ben/b/s1",
        "process_slide",
        "cell_segmentation",
        "1",
        "of",
        "1",
        "gpu",
        "slot",
    ]


def _queued_run(instance, partition: str) -> str:
    """A queued run record, as the coordinator leaves it (no daemon here dequeues it)."""
    from dagster import DagsterRun, DagsterRunStatus
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

    user, branch, _ = partition.split("/")
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("wsi_assets.definitions"), "__repository__"), "process_slide"
    )
    run_id = str(uuid.uuid4())
    tags = {"dagster/partition": partition, "wsi/user": user, "wsi/branch": f"{user}/{branch}"}
    instance.add_run(
        DagsterRun(job_name="process_slide", run_id=run_id, status=DagsterRunStatus.QUEUED, tags=tags, remote_job_origin=origin)
    )
    return run_id


def _queue_lines(instance, run_id: str) -> list[str]:
    return [m for m in _log(instance, run_id) if m and m.startswith("Queued: ")]


def test_a_queued_runs_own_log_says_its_place_and_what_it_waits_for_when_they_change(instance):
    from dagster import DagsterRunStatus

    from wsi_assets.defs.queue_status import refresh_queue_tags

    holder = _started_run(instance, "ana/main/hold")
    first, second, other = (_queued_run(instance, key) for key in ("ana/main/q1", "ana/main/q2", "ben/main/q1"))
    refresh_queue_tags(instance)
    assert _queue_lines(instance, first) == [
        (
            "Queued: 1st in line, 1st in branch ana/main; waiting for: branch busy "
            "(an earlier run of ana/main is in progress or ahead of it; a branch runs one run at a time, in order)"
        )
    ]
    assert _queue_lines(instance, second)[0].startswith("Queued: 2nd in line, 2nd in branch ana/main; waiting for: branch busy (")
    assert _queue_lines(instance, other)[0].startswith("Queued: 3rd in line, 1st in branch ben/main; waiting for: next (")
    assert instance.get_run_by_id(first).status == DagsterRunStatus.QUEUED, "a log line does not start or end a queued run"

    refresh_queue_tags(instance)
    assert [len(_queue_lines(instance, r)) for r in (first, second, other)] == [1, 1, 1], "an unchanged place is not logged again"

    instance.report_run_failed(instance.get_run_by_id(holder))  # ana/main is free: its first queued run is next
    refresh_queue_tags(instance)
    assert _queue_lines(instance, first)[-1].startswith("Queued: 1st in line, 1st in branch ana/main; waiting for: next (")
    assert [len(_queue_lines(instance, r)) for r in (first, second, other)] == [2, 1, 1], "only the run whose place changed"
