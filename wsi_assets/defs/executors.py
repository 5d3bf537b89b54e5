"""The executor of the slide jobs: in-process by default, Celery where $WSI_EXECUTOR=celery."""

from dagster import ExecutorDefinition, in_process_executor

from wsi_assets.queue.engines import celery_settings, chosen_engine


def slide_executor() -> ExecutorDefinition:
    """The executor every slide job uses on this deployment (read when the definitions load)."""
    if chosen_engine() == "in_process":
        return in_process_executor
    from dagster_celery import celery_executor

    settings = celery_settings()
    return celery_executor.configured(
        {"broker": settings.broker, "backend": settings.backend, "config_source": settings.app_config()},
        name="celery",
    )
