"""Queue pieces without services: tag derivation, the worker check, the audit arithmetic."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from wsi_assets.queue.tags import UnqueueableRun, slide_queue_tags, tags_to_store
from wsi_assets.queue.workers import worker_alive
from wsi_assets.testing.queue_audit import RunSpan, audit_queue, max_overlap


def test_tags_come_from_the_partition_whatever_the_launch_path():
    assert slide_queue_tags({"dagster/partition": "ana/cohort-b/s1"}) == {"wsi/user": "ana", "wsi/branch": "ana/cohort-b"}
    assert slide_queue_tags(
        {"dagster/asset_partition_range_start": "ana/main/a", "dagster/asset_partition_range_end": "ana/main/z"}
    ) == {
        "wsi/user": "ana",
        "wsi/branch": "ana/main",
    }
    assert slide_queue_tags({"some": "tag"}) == {}
    # Per-branch runs (fine-tuning, the branch's review table) queue in their branch too.
    assert slide_queue_tags({"dagster/partition": "ana/cohort-b"}) == {"wsi/user": "ana", "wsi/branch": "ana/cohort-b"}


def test_runs_that_span_branches_or_have_bad_keys_are_refused():
    with pytest.raises(UnqueueableRun, match="multi-run backfill"):
        slide_queue_tags(
            {"dagster/asset_partition_range_start": "ana/main/a", "dagster/asset_partition_range_end": "ana/other/b"}
        )
    with pytest.raises(UnqueueableRun):
        slide_queue_tags({"dagster/partition": "not-a-slide-key"})
    with pytest.raises(UnqueueableRun, match="branch name"):
        slide_queue_tags({"dagster/partition": "ana/.."})


def test_priority_is_neutralised_so_a_later_run_cannot_jump_its_branch():
    assert tags_to_store({"dagster/partition": "ana/main/s1", "dagster/priority": "5"})["dagster/priority"] == "0"
    assert tags_to_store({"dagster/partition": "ana/main/s1", "wsi/user": "ana", "wsi/branch": "ana/main"}) == {}


@pytest.mark.parametrize("priority", ["-3", "-1", "1", "00"])
def test_any_priority_but_zero_is_reset_negative_ones_too(priority):
    # A negative priority would hold an earlier run back behind later ones of its branch just as
    # a positive one lets a later run jump ahead; the stored tag is always exactly "0".
    assert tags_to_store({"dagster/partition": "ana/main/s1", "dagster/priority": priority})["dagster/priority"] == "0"
    assert "dagster/priority" not in tags_to_store({"dagster/partition": "ana/main/s1", "dagster/priority": "0"})


def test_worker_alive_follows_a_real_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reported = time.time()
    try:
        assert worker_alive(process.pid, reported)
        assert not worker_alive(process.pid, reported - 3600), "a process started after the report is another one"
    finally:
        process.kill()
        process.wait()
    assert not worker_alive(process.pid, reported)


def _span(run, branch, submitted, started, ended, user="u"):
    return RunSpan(run, user, branch, submitted, started, ended, "SUCCESS")


def test_audit_finds_overlaps_order_and_limit_breaches():
    spans = [
        _span("a1", "u/a", 0, 1, 5),
        _span("a2", "u/a", 1, 4, 8),  # overlaps a1
        _span("b1", "u/b", 2, 9, 10),
        _span("b2", "u/b", 3, 6, 7),  # submitted after b1 but started first
    ]
    audit = audit_queue(spans, gpu_steps=[(1, 3), (2, 4)])
    assert audit.branch_overlaps == [("u/a", "a1", "a2")]
    assert audit.order_violations == [("u/b", "b1", "b2")]
    assert audit.max_runs_per_user == 2 and audit.max_gpu_steps == 2
    assert audit.violations(user_limit=2, global_limit=4, gpu_limit=1) == 3
    assert max_overlap([(0, 1), (1, 2)]) == 1


def test_gpu_pool_gets_exactly_the_configured_slots(tmp_path):
    import shutil

    from dagster import DagsterInstance

    from wsi_assets.queue.dagster_adapter import ensure_pool_slots
    from wsi_assets.testing.dagster_services import REPO

    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        ensure_pool_slots(instance)
        assert storage.get_concurrency_info("gpu").slot_count == 1
        storage.set_concurrency_slots("gpu", 2)  # what a racing first claim can leave behind
        ensure_pool_slots(instance)
        assert storage.get_concurrency_info("gpu").slot_count == 1


def test_machine_slot_lets_one_process_at_a_time(tmp_path):
    """Two processes asking for the only slot: their held intervals never overlap."""
    import json

    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from wsi_assets.queue.gpu_slots import machine_slot\n"
        "with machine_slot(Path(sys.argv[1]), 1):\n"
        "    start = time.time(); time.sleep(0.5); end = time.time()\n"
        "print(json.dumps([start, end]))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    spans = sorted(json.loads(p.communicate(timeout=60)[0]) for p in processes)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def test_postgres_slot_lets_one_holder_at_a_time():
    """Advisory locks on a real PostgreSQL (skipped without WSI_PG_*; .ci/run provides one)."""
    import os
    import threading

    from wsi_assets.queue.gpu_slots import postgres_slot

    if not os.environ.get("WSI_PG_HOST"):
        pytest.skip("PostgreSQL not configured (WSI_PG_*)")
    url = (
        f"postgresql://{os.environ['WSI_PG_USER']}:{os.environ['WSI_PG_PASSWORD']}"
        f"@{os.environ['WSI_PG_HOST']}:{os.environ['WSI_PG_PORT']}/postgres"
    )
    spans = []

    def hold():
        with postgres_slot(url, "gpu-test", 1):
            start = time.time()
            time.sleep(0.3)
            spans.append((start, time.time()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    spans.sort()
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def test_gpu_slot_logs_when_the_gpu_is_held(tmp_path):
    import shutil

    from dagster import DagsterInstance

    from wsi_assets.queue.dagster_adapter import gpu_slot
    from wsi_assets.testing.dagster_services import REPO

    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    lines = []
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        with gpu_slot(instance, lines.append):
            lines.append("work")
    assert lines == ["gpu slot 0 held", "work", "gpu slot 0 released"]
    assert (tmp_path / "gpu-slots" / "slot-0.lock").exists()
