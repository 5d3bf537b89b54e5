"""Queue places and reasons on constructed run lists, with dagster.yaml's own limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wsi_assets.queue.positions import (
    BRANCH_BUSY,
    GLOBAL_LIMIT,
    GPU,
    NEXT,
    USER_LIMIT,
    QueueLimits,
    QueueRun,
    changed_place_tags,
    queue_places,
)
from wsi_assets.queue.table import matches, queue_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped_limits() -> QueueLimits:
    """The limits the shipped dagster.yaml gives the coordinator (branch 1, user 2, all 4)."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]["config"]
    return QueueLimits(config["max_concurrent_runs"], tuple(config["tag_concurrency_limits"]), gpu_slots=1, gpu_slots_taken=0)


def run(run_id: str, partition: str, order: int, job: str = "process_slide", **extra: str) -> QueueRun:
    user, branch, _ = partition.split("/")
    tags = {"dagster/partition": partition, "wsi/user": user, "wsi/branch": f"{user}/{branch}", **extra}
    return QueueRun(run_id, tags, job, order, 1_700_000_000.0 + order)


def reasons(places) -> dict[str, tuple[int, int | None, str]]:
    return {p.run.run_id: (p.position, p.branch_position, p.waiting_for) for p in places}


def test_branch_user_and_global_limits_name_what_each_run_waits_for(shipped_limits):
    in_progress = [run("r-ana-main", "ana/main/s0", 1), run("r-ana-b", "ana/b/s0", 2), run("r-ben-main", "ben/main/s0", 3)]
    queued = [
        run("q1", "ana/main/s1", 10),  # its branch is running
        run("q2", "ana/c/s1", 11),  # ana already has 2 runs in progress
        run("q3", "ben/b/s1", 12),  # free: takes the 4th global slot
        run("q4", "cy/main/s1", 13),  # 4 in progress after q3
        run("q5", "cy/main/s2", 14),  # behind q4 in its branch
        run("q6", "ben/main/s1", 15),
    ]
    places = queue_places(list(reversed(queued)), in_progress, shipped_limits)
    assert [p.run.run_id for p in places] == ["q1", "q2", "q3", "q4", "q5", "q6"], "oldest first, whatever the input order"
    assert reasons(places) == {
        "q1": (1, 1, BRANCH_BUSY),
        "q2": (2, 1, USER_LIMIT),
        "q3": (3, 1, NEXT),
        "q4": (4, 1, GLOBAL_LIMIT),
        "q5": (5, 2, BRANCH_BUSY),
        "q6": (6, 1, BRANCH_BUSY),
    }


def test_a_free_run_waits_for_the_gpu_when_every_slot_is_taken(shipped_limits):
    busy_gpu = QueueLimits(shipped_limits.max_concurrent_runs, shipped_limits.tag_limits, gpu_slots=1, gpu_slots_taken=1)
    places = queue_places([run("q1", "ana/main/s1", 1), run("q2", "ben/main/s1", 2)], [run("r", "cy/main/s0", 0)], busy_gpu)
    assert [p.waiting_for for p in places] == [GPU, GPU]
    two_gpus = QueueLimits(shipped_limits.max_concurrent_runs, shipped_limits.tag_limits, gpu_slots=2, gpu_slots_taken=1)
    places = queue_places([run("q1", "ana/main/s1", 1), run("q2", "ana/main/s2", 2)], [run("r", "cy/main/s0", 0)], two_gpus)
    assert [p.waiting_for for p in places] == [NEXT, BRANCH_BUSY], "a slot is free; a queue limit outranks the GPU"
    places = queue_places(
        [run("q1", "ana/main/s1", 1, job="export_cells"), run("q2", "ben/main/b1", 2, job="process_batch")], [], busy_gpu
    )
    assert [p.waiting_for for p in places] == [NEXT, GPU], "a job without a GPU step never waits for a GPU slot"


def test_the_gpu_jobs_are_the_jobs_with_a_step_in_the_gpu_pool():
    from wsi_assets.definitions import defs
    from wsi_assets.queue.tags import GPU_JOBS, GPU_POOL

    using_gpu = {
        job.name
        for job in defs.get_repository_def().get_all_jobs()
        if any(getattr(node.definition, "pool", None) == GPU_POOL for node in job.graph.node_dict.values())
    }
    assert "process_slide" in using_gpu and "export_cells" not in using_gpu
    assert using_gpu == set(GPU_JOBS)


def test_priority_goes_first_and_runs_without_a_branch_still_have_a_place(shipped_limits):
    loose = QueueRun("loose", {"dagster/priority": "5"}, "train_model", 9, 0.0)
    places = queue_places([run("q1", "ana/main/s1", 1), loose], [], shipped_limits)
    assert [(p.run.run_id, p.position, p.branch_position, p.waiting_for) for p in places] == [
        ("loose", 1, None, NEXT),
        ("q1", 2, 1, NEXT),
    ]


def test_a_user_blocked_branch_keeps_its_later_runs_behind_and_no_limit_means_no_wait(shipped_limits):
    queued = [run("q1", "ana/main/s1", 1), run("q2", "ana/main/s2", 2), run("q3", "ana/other/s1", 3)]
    ana_busy = [run("r1", "ana/x/s0", 0), run("r2", "ana/y/s0", 0)]
    assert [p.waiting_for for p in queue_places(queued, ana_busy, shipped_limits)] == [USER_LIMIT, BRANCH_BUSY, USER_LIMIT]
    assert [p.waiting_for for p in queue_places(queued, [], QueueLimits())] == [NEXT, NEXT, NEXT]
    limits = QueueLimits(-1, ({"key": "wsi/user", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},))
    assert [p.waiting_for for p in queue_places(queued, [], limits)] == [NEXT, USER_LIMIT, USER_LIMIT], (
        "no branch limit: the user limit holds both"
    )
    other_tag = QueueLimits(-1, ({"key": "lab/scanner", "value": "gt450", "limit": 0},))
    assert (
        queue_places([run("q3", "ana/other/s1", 3, **{"lab/scanner": "gt450"})], [], other_tag)[0].waiting_for
        == "lab/scanner limit"
    )


def test_only_changed_tags_are_rewritten(shipped_limits):
    first = queue_places([run("q1", "ana/main/s1", 1), run("q2", "ana/main/s2", 2)], [], shipped_limits)
    changes = changed_place_tags(first)
    assert changes == {
        "q1": {"wsi/queue_position": "1", "wsi/branch_position": "1", "wsi/waiting_for": NEXT},
        "q2": {"wsi/queue_position": "2", "wsi/branch_position": "2", "wsi/waiting_for": BRANCH_BUSY},
    }
    tagged = [QueueRun(p.run.run_id, {**p.run.tags, **changes[p.run.run_id]}, p.run.job, p.run.order) for p in first]
    assert changed_place_tags(queue_places(tagged, [], shipped_limits)) == {}
    # q1 started: q2 moves up and now waits for its branch's running run.
    moved = queue_places(tagged[1:], [tagged[0]], shipped_limits)
    assert changed_place_tags(moved) == {"q2": {"wsi/queue_position": "1", "wsi/branch_position": "1"}}


def test_table_filters_by_user_and_branch(shipped_limits):
    places = queue_places(
        [run("q1", "ana/main/s1", 1), run("q2", "ben/main/s1", 2), run("q3", "ana/cohort/s1", 3)], [], shipped_limits
    )
    assert [p.run.run_id for p in places if matches(p, "ana", None)] == ["q1", "q3"]
    assert [p.run.run_id for p in places if matches(p, None, "main")] == ["q1", "q2"]
    assert [p.run.run_id for p in places if matches(p, None, "ben/main")] == ["q2"]
    assert [p.run.run_id for p in places if matches(p, "nobody", None)] == []
    lines = queue_table(places).splitlines()
    assert lines[0].split()[:3] == ["run", "id", "user"]
    assert lines[2].split()[:8] == ["q2", "ben", "ben/main", "ben/main/s1", "process_slide", "2", "1", "next"]


def test_submit_refuses_an_ambiguous_tiff_and_a_file_still_being_written(tmp_path, monkeypatch):
    import threading

    import numpy as np
    import tifffile

    from wsi_assets.cli.submit import refuse_unsettled, submit
    from wsi_assets.uploads.checks import UploadRefused

    main = tmp_path / "alice" / "inputs" / "main"
    main.mkdir(parents=True)
    # OpenSlide reads it and it holds planes like a stack: the sensor skips it as ambiguous.
    tifffile.imwrite(
        main / "tiled.tif", np.zeros((3, 256, 256), np.uint8), tile=(128, 128), photometric="minisblack", metadata=None
    )
    monkeypatch.setenv("WSI_USER_FILES", str(tmp_path))
    before = (main / "tiled.tif").read_bytes()
    with pytest.raises(UploadRefused, match="tiled.tif: ambiguous: OpenSlide reads it"):
        submit("alice/main/tiled", "process_slide")
    assert (main / "tiled.tif").read_bytes() == before

    growing = main / "growing.svs"
    growing.write_bytes(b"\0" * 1024)
    stop = threading.Event()

    def keep_writing():
        with open(growing, "ab") as out:
            while not stop.wait(0.1):
                out.write(b"\0" * 1024)
                out.flush()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        with pytest.raises(UploadRefused, match="growing.svs: still being written"):
            refuse_unsettled(growing, stack=False)
    finally:
        stop.set()
        writer.join()


def test_run_url_follows_the_webserver_setting(monkeypatch):
    from wsi_assets.cli.submit import run_url

    monkeypatch.delenv("WSI_WEBSERVER_URL", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # else the address run.sh wrote beside the instance counts
    assert run_url("abc") == "http://127.0.0.1:3000/runs/abc"
    monkeypatch.setenv("WSI_WEBSERVER_URL", "https://dagster.lab.example/")
    assert run_url("abc") == "https://dagster.lab.example/runs/abc"


def test_queue_command_says_in_one_line_when_there_is_no_instance(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "missing")}
    completed = subprocess.run(
        [sys.executable, "-m", "wsi_assets.cli.queue"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    message = completed.stderr.strip()
    assert message.startswith("error: cannot open the Dagster instance") and "\n" not in message, completed.stderr


def test_the_clis_find_run_sh_instance_without_dagster_home_and_say_so_in_one_line_otherwise(tmp_path):
    from wsi_assets.cli.instance_home import NoInstance, instance_home

    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (checkout / ".dagster_home").mkdir(parents=True)
    with pytest.raises(NoInstance) as missing:
        instance_home({}, cwd=elsewhere, checkout=checkout)
    assert "\n" not in str(missing.value) and "scripts/run.sh" in str(missing.value)
    (checkout / ".dagster_home" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    assert instance_home({}, cwd=elsewhere, checkout=checkout) == checkout / ".dagster_home", "run.sh's folder, from any folder"
    assert (
        instance_home({"DAGSTER_HOME": str(checkout / ".dagster_home")}, cwd=elsewhere, checkout=checkout)
        == checkout / ".dagster_home"
    )
    with pytest.raises(NoInstance, match="holds no dagster.yaml"):
        instance_home({"DAGSTER_HOME": str(elsewhere)}, cwd=elsewhere, checkout=checkout)


def test_submit_takes_a_branch_for_finetune_from_reviews(tmp_path):
    from wsi_assets.cli.submit import JOBS, branch_with_reviews, launch_command
    from wsi_assets.core.keys import InvalidSlideKey
    from wsi_assets.uploads.checks import UploadRefused

    assert "finetune_from_reviews" in JOBS
    with pytest.raises(UploadRefused, match="no reviews for alice/main"):
        branch_with_reviews(tmp_path, "alice/main")
    (tmp_path / "alice" / "reviews" / "main").mkdir(parents=True)
    assert branch_with_reviews(tmp_path, "alice/main") == "alice/main"
    with pytest.raises(InvalidSlideKey, match="<user>/<branch>"):
        branch_with_reviews(tmp_path, "alice/main/slide01")
    command = launch_command("alice/main", "finetune_from_reviews")
    assert command[command.index("-j") + 1] == "finetune_from_reviews" and '"dagster/partition": "alice/main"' in command[-1]
