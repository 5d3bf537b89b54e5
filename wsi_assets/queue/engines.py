"""Which engine runs a slide job's steps, chosen per deployment by $WSI_EXECUTOR.

`in_process` (the default, and the single-machine instance's choice): every step in the run's own
process. `celery`: each step is a Celery task on the broker in $WSI_CELERY_BROKER; the
segmentation step goes to the `gpu` queue, the others to the default queue (deploy/celery/).
`k8s`: each step is a Kubernetes Job (dagster-k8s's k8s_job_executor, under its K8sRunLauncher);
the segmentation step's pod asks for GPUs by its `dagster-k8s/config` tag (deploy/k8s/).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

EXECUTOR_ENV = "WSI_EXECUTOR"
BROKER_ENV = "WSI_CELERY_BROKER"
BACKEND_ENV = "WSI_CELERY_BACKEND"
ENGINES = ("in_process", "celery", "k8s")
DEFAULT_CELERY_QUEUE = "dagster"  # dagster_celery.defaults.task_default_queue


class EngineSettingError(ValueError):
    """$WSI_EXECUTOR or the Celery settings it needs are wrong; the message says which."""


@dataclass(frozen=True)
class CelerySettings:
    broker: str
    backend: str

    def app_config(self) -> dict:
        """Celery settings shared by the run (which sends tasks) and the workers (which take them)."""
        return {
            # A worker takes a task only when a process is free: a killed worker then loses only
            # the step it was running, never tasks it had reserved for later.
            "worker_disable_prefetch": True,
            "worker_prefetch_multiplier": 1,
            "task_default_queue": DEFAULT_CELERY_QUEUE,
            "broker_connection_retry_on_startup": True,
        }


def chosen_engine(environ=None) -> str:
    environ = os.environ if environ is None else environ
    engine = environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if engine not in ENGINES:
        raise EngineSettingError(f"{EXECUTOR_ENV}={engine!r} is not an engine; use one of: {', '.join(ENGINES)}")
    return engine


def celery_settings(environ=None) -> CelerySettings:
    environ = os.environ if environ is None else environ
    broker = environ.get(BROKER_ENV, "").strip()
    if not broker:
        raise EngineSettingError(f"{EXECUTOR_ENV}=celery needs {BROKER_ENV}, e.g. redis://127.0.0.1:6379/0")
    if not broker.startswith(("redis://", "rediss://", "amqp://", "pyamqp://")):
        raise EngineSettingError(f"{BROKER_ENV}={broker!r} is not a Redis or RabbitMQ URL (redis://host:port/db or amqp://...)")
    backend = environ.get(BACKEND_ENV, "").strip() or (broker if broker.startswith("redis") else "rpc://")
    return CelerySettings(broker=broker, backend=backend)
