"""The segmentation step's routing tags for the engines that run steps on other machines.

One setting, `GpuStepSettings` (GPUs per step, node selector, tolerations), gives both the
dagster-celery queue tag and the dagster-k8s per-step config; the pipeline code only attaches
`gpu_step_tags()` to the segmentation step. Without an engine the tags are inert.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wsi_assets.queue.tags import DEVICE_TAG, GPU_POOL

CELERY_QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY
GPU_QUEUE = GPU_POOL
GPU_RESOURCE = "nvidia.com/gpu"
SETTINGS_ENV = "WSI_GPU_STEP_SETTINGS"  # a YAML file with the keys of GpuStepSettings
DEFAULT_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)
_KNOWN_KEYS = ("gpus_per_step", "node_selector", "tolerations")


class GpuStepSettingsError(ValueError):
    """A GPU step settings file that cannot be used, with the file and key named."""


@dataclass(frozen=True)
class GpuStepSettings:
    """Where and with how many GPUs the segmentation step runs on an engine."""

    gpus_per_step: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = DEFAULT_TOLERATIONS

    def __post_init__(self):
        if not isinstance(self.gpus_per_step, int) or isinstance(self.gpus_per_step, bool) or not 1 <= self.gpus_per_step <= 16:
            raise GpuStepSettingsError(f"gpus_per_step must be a whole number from 1 to 16, not {self.gpus_per_step!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.node_selector.items()):
            raise GpuStepSettingsError(
                f"node_selector must map label names to label values (strings), not {self.node_selector!r}"
            )
        for toleration in self.tolerations:
            if not isinstance(toleration, dict) or "operator" not in toleration:
                raise GpuStepSettingsError(f"each toleration needs at least an 'operator' (Exists or Equal), not {toleration!r}")


def load_gpu_step_settings(path: str | Path | None = None) -> GpuStepSettings:
    """Settings from `path`, else from the file named by $WSI_GPU_STEP_SETTINGS, else the defaults."""
    path = path or os.environ.get(SETTINGS_ENV)
    if not path:
        return GpuStepSettings()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise GpuStepSettingsError(f"cannot read GPU step settings {path}: {error}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise GpuStepSettingsError(f"{path} must be a mapping with keys {', '.join(_KNOWN_KEYS)}")
    unknown = sorted(set(raw) - set(_KNOWN_KEYS))
    if unknown:
        raise GpuStepSettingsError(f"unknown key {unknown[0]!r} in {path}; known keys: {', '.join(_KNOWN_KEYS)}")
    try:
        return GpuStepSettings(
            gpus_per_step=raw.get("gpus_per_step", 1),
            node_selector=dict(raw.get("node_selector") or {}),
            tolerations=tuple(raw.get("tolerations", DEFAULT_TOLERATIONS) or ()),
        )
    except GpuStepSettingsError as error:
        raise GpuStepSettingsError(f"{path}: {error}") from None


def k8s_gpu_step_config(settings: GpuStepSettings) -> dict:
    """The `dagster-k8s/config` value: GPU limit, node selector and tolerations of the step's pod."""
    gpus = str(settings.gpus_per_step)
    pod_spec: dict = {"tolerations": [dict(t) for t in settings.tolerations]}
    if settings.node_selector:
        pod_spec["node_selector"] = dict(settings.node_selector)
    return {
        # Kubernetes needs requests == limits for extended resources such as GPUs.
        "container_config": {"resources": {"limits": {GPU_RESOURCE: gpus}, "requests": {GPU_RESOURCE: gpus}}},
        "pod_spec_config": pod_spec,
    }


def gpu_step_tags(settings: GpuStepSettings | None = None) -> dict[str, str]:
    """Op tags of the segmentation step: its device, its Celery queue, its Kubernetes pod config."""
    settings = settings or load_gpu_step_settings()
    return {
        DEVICE_TAG: GPU_POOL,
        CELERY_QUEUE_TAG: GPU_QUEUE,
        K8S_CONFIG_TAG: json.dumps(k8s_gpu_step_config(settings), sort_keys=True),
    }
