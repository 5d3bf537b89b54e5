"""The executor of the slide jobs: in-process by default, Celery or Kubernetes Jobs by $WSI_EXECUTOR."""

from dagster import ExecutorDefinition, in_process_executor

from wsi_assets.queue.engines import celery_settings, chosen_engine


def slide_executor() -> ExecutorDefinition:
    """The executor every slide job uses on this deployment (read when the definitions load)."""
    engine = chosen_engine()
    if engine == "in_process":
        return in_process_executor
    if engine == "k8s":
        from dagster_k8s import k8s_job_executor

        # Image, namespace and instance come from the K8sRunLauncher of deploy/k8s/values.yaml.
        return k8s_job_executor
    from dagster_celery import celery_executor

    settings = celery_settings()
    return celery_executor.configured(
        {"broker": settings.broker, "backend": settings.backend, "config_source": settings.app_config()},
        name="celery",
    )
