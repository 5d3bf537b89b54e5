"""Kubernetes, offline: the segmentation step's Job as dagster-k8s builds it, and the instance with
the K8s run launcher loaded from a fake kubeconfig. A live cluster is used only when KUBECONFIG is set."""

from __future__ import annotations

import os

import pytest
import yaml

from wsi_assets.queue.engine_tags import GpuStepSettingsError, gpu_step_tags, load_gpu_step_settings
from wsi_assets.testing.dagster_services import REPO

K8S = REPO / "deploy" / "k8s"
FAKE_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
    "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "wsi"}}],
    "current-context": "fake",
}


def step_job(op_tags: dict):
    """The V1Job dagster-k8s's k8s_job_executor would create for a step with these tags."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    config = DagsterK8sJobConfig(
        job_image="registry.example.org/wsi-assets:0.1.0",
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="wsi-dagster-instance",
    )
    return construct_dagster_k8s_job(
        config,
        ["dagster", "api", "execute_step"],
        "dagster-step-test",
        user_defined_k8s_config=get_user_defined_k8s_config(op_tags),
    )


def test_segmentation_step_job_asks_for_a_gpu_on_a_gpu_node():
    from wsi_assets.definitions import defs

    # The deployed setting file, as the user-code image sets it.
    tags = {
        **defs.resolve_assets_def("cell_segmentation").op.tags,
        **gpu_step_tags(load_gpu_step_settings(K8S / "gpu_step.yaml")),
    }
    pod = step_job(tags).spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert container.resources.requests == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]


def test_the_loaded_definitions_carry_the_default_gpu_step_config():
    from wsi_assets.definitions import defs

    pod = step_job(defs.resolve_assets_def("cell_segmentation").op.tags).spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert not pod.node_selector


def test_other_steps_ask_for_no_gpu():
    from wsi_assets.definitions import defs

    pod = step_job(defs.resolve_assets_def("slide_metadata").op.tags).spec.template.spec
    assert not (pod.containers[0].resources and pod.containers[0].resources.limits)
    assert not pod.tolerations


def test_one_setting_changes_gpus_selector_and_tolerations(tmp_path):
    settings = tmp_path / "gpu_step.yaml"
    settings.write_text("gpus_per_step: 2\nnode_selector: {gpu-type: h200}\ntolerations: []\n")
    pod = step_job(gpu_step_tags(load_gpu_step_settings(settings))).spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
    assert pod.node_selector == {"gpu-type": "h200"}
    assert not pod.tolerations


@pytest.mark.parametrize(
    "text, message",
    [
        ("gpus_per_step: 0\n", "gpus_per_step must be a whole number from 1 to 16, not 0"),
        ("gpu_per_step: 2\n", "unknown key 'gpu_per_step'"),
        ("node_selector: {gpu: 1}\n", "node_selector must map label names to label values (strings)"),
        ("tolerations: [{key: nvidia.com/gpu}]\n", "each toleration needs at least an 'operator'"),
        ("gpus_per_step: [\n", "cannot read GPU step settings"),
    ],
)
def test_bad_gpu_step_settings_fail_in_one_line_naming_the_file(tmp_path, text, message):
    settings = tmp_path / "gpu_step.yaml"
    settings.write_text(text)
    with pytest.raises(GpuStepSettingsError) as raised:
        load_gpu_step_settings(settings)
    assert message in str(raised.value) and str(settings) in str(raised.value)
    assert "\n" not in str(raised.value)


def _helm_instance_yaml(kubeconfig) -> dict:
    """The instance the chart renders from values.yaml (coordinator, monitoring) with the K8s launcher."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    return {
        "run_coordinator": {"module": coordinator["module"], "class": coordinator["class"], "config": coordinator["config"]},
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "load_incluster_config": False,
                "kubeconfig_file": str(kubeconfig),
                "service_account_name": "wsi-dagster",
                "instance_config_map": "wsi-dagster-instance",
                "job_image": "registry.example.org/wsi-assets:0.1.0",
                "dagster_home": values["global"]["dagsterHome"],
                "job_namespace": "wsi",
                "env_vars": values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"],
            },
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
        },
    }


def test_helm_values_keep_the_queue_of_dagster_yaml():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    ours = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]
    chart = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert (chart["module"], chart["class"], chart["config"]) == (ours["module"], ours["class"], ours["config"])


def test_instance_loads_with_the_k8s_run_launcher_and_a_fake_kubeconfig(tmp_path):
    from dagster import DagsterInstance
    from dagster_k8s import K8sRunLauncher

    from wsi_assets.queue.dagster_adapter import SlideRunCoordinator

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(FAKE_KUBECONFIG))
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(_helm_instance_yaml(kubeconfig)))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, SlideRunCoordinator)
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "wsi" and launcher.kubeconfig_file == str(kubeconfig)
        assert "WSI_EXECUTOR=k8s" in launcher.env_vars


def test_instance_with_a_missing_kubeconfig_fails_to_load(tmp_path):
    from dagster import DagsterInstance

    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(_helm_instance_yaml(tmp_path / "absent-kubeconfig")))
    with pytest.raises(Exception, match="absent-kubeconfig|Invalid kube-config|No configuration found"):
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            instance.run_launcher  # noqa: B018 - the launcher loads lazily


def test_k8s_engine_uses_dagster_k8s_step_jobs(monkeypatch):
    from wsi_assets.defs.executors import slide_executor

    monkeypatch.setenv("WSI_EXECUTOR", "k8s")
    assert slide_executor().name == "k8s"


@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="live cluster only when KUBECONFIG is set")
def test_live_cluster_reports_allocatable_gpus():
    from kubernetes import client, config

    config.load_kube_config()
    nodes = client.CoreV1Api().list_node().items
    assert nodes, "the cluster has no nodes"
    gpus = sum(int(n.status.allocatable.get("nvidia.com/gpu", 0)) for n in nodes)
    assert gpus >= 1, "no node offers nvidia.com/gpu: install the NVIDIA device plugin"
