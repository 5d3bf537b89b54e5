"""How long the queue view's replay takes over a long queue (no instance: constructed run records).

python benchmarks/queue_places_timing.py [--queued 10000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from wsi_assets.queue.positions import QueueLimits, QueueRun, changed_place_tags, queue_places

REPO = Path(__file__).resolve().parents[1]


def run_of(i: int) -> QueueRun:
    user, branch = f"u{i % 10}", f"b{i % 500}"
    tags = {"wsi/user": user, "wsi/branch": f"{user}/{branch}", "dagster/partition": f"{user}/{branch}/s{i}"}
    return QueueRun(str(i), tags, "process_slide", i, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]["config"]
    limits = QueueLimits(config["max_concurrent_runs"], tuple(config["tag_concurrency_limits"]), gpu_slots=1, gpu_slots_taken=1)
    queued, in_progress = [run_of(i) for i in range(args.queued)], [run_of(-i) for i in range(1, 5)]
    started = time.perf_counter()
    places = queue_places(queued, in_progress, limits)
    changes = changed_place_tags(places)
    print(f"{len(places)} queued runs placed, {len(changes)} tag sets to write, in {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
