"""A Celery worker for slide steps, on the broker of $WSI_CELERY_BROKER (deploy/celery/).

    python -m wsi_assets.cli.celery_worker --queue gpu --name gpu1 --concurrency 1   # one per GPU
    python -m wsi_assets.cli.celery_worker --queue dagster --name cpu1 --concurrency 2

Same tasks and broker settings as the runs that send them (wsi_assets.queue.engines), so a
worker and a run cannot disagree. Run it with the same WSI_USER_FILES as the daemon (a shared
mount); the Dagster instance comes with each task.
"""

from __future__ import annotations

import argparse
import sys

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from wsi_assets.queue.engines import DEFAULT_CELERY_QUEUE, EngineSettingError, celery_settings


def celery_app():
    settings = celery_settings()
    app = make_app(
        CeleryExecutor.for_cli(broker=settings.broker, backend=settings.backend, config_source=settings.app_config()).app_args()
    )
    create_task(app)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queue", default=DEFAULT_CELERY_QUEUE, help="queue to take steps from: gpu, or dagster (the default queue)"
    )
    parser.add_argument("--name", required=True, help="worker name; the step log shows <name>@<host>")
    parser.add_argument("--concurrency", type=int, default=1, help="steps at once (GPU workers: 1 per GPU)")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    try:
        app = celery_app()
    except EngineSettingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Loaded once here, before the pool forks: each step's task then finds the definitions (and
    # torch) imported instead of importing them in every new pool process.
    import wsi_assets.definitions  # noqa: F401

    # prefork: the worker's main process keeps answering pings while a step runs in its child.
    app.worker_main(
        [
            "worker",
            "-Q",
            args.queue,
            "-n",
            f"{args.name}@%h",
            "-c",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
