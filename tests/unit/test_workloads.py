"""Rendered Deployments and Services are valid Kubernetes objects that carry the plan."""

import kubernetes_validate
import pytest

from modelfleet.api.load import load_resources
from modelfleet.render.workloads import render_deployment, render_service, vllm_args

K8S_VERSION = "1.34"


@pytest.fixture(scope="module")
def chat():
    return load_resources(["manifests/samples"]).pools[0]


def test_every_rendered_object_is_schema_valid(chat):
    for variant in chat.spec.variants:
        for manifest in (render_deployment(chat, variant, 3), render_service(chat, variant)):
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_deployment_carries_replicas_gpus_and_probes(chat):
    variant = chat.spec.variant("qwen3-235b")
    deployment = render_deployment(chat, variant, 17)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 17
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    args = vllm_args(chat, variant)
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    names = args[args.index("--served-model-name") + 1 : args.index("--tensor-parallel-size")]
    assert names == ["Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3-235b", "chat"]
    # 900 s of model load must fit in the startup probe's budget.
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= variant.startup_seconds
    selector = deployment["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ModelPool"
