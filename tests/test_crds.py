"""The deployment targets beyond deploy/k8s: KServe, KEDA and the llm inference gateway.

For every kubernetes=yes combination (sharing test_deployment.py's bake): each folder's
kustomization resolves to the resources it lists (``$patch: delete`` applied); every custom
resource validates strictly against its vendored upstream CRD (tests/crd_schemas.py), every
built-in one against the Kubernetes schemas; and the new resources agree with
deploy/k8s/deployment.yaml and the service: probes, drain, resources, image, settings, the
metrics the autoscalers query, the selectors and ports the gateway routes to. For a few
combinations, ``kubectl kustomize`` (where installed) renders each folder to exactly what
the resolution here says.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .combinations import DEFAULTS, OPTIONS, all_combinations, combination_id
from .crd_schemas import served_schemas, validate_custom_resource
from .test_deployment import (
    KUBERNETES_COMBINATIONS,
    KUBERNETES_VERSIONS,
    container_of,
    load_manifests,
    package_of,
)

FOLDERS = ("kserve/raw", "kserve/serverless", "keda", "gateway")
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
# kubectl kustomize for one combination per workload, plus a gpu and a monitoring=none one
RENDERED = [
    {**DEFAULTS, "workload": workload, "device": device, "monitoring": monitoring}
    for workload, device, monitoring in [
        ("vision", "cpu", "prometheus"),
        ("llm", "gpu", "prometheus"),
        ("embeddings", "cpu", "none"),
        ("tts", "gpu", "prometheus"),
    ]
]

# Knative Serving knative-v1.23.0 (pkg/apis/serving/fieldmask.go, k8s_validation.go): what its
# webhook accepts in a revision's pod spec with the default config-features. KServe's Knative
# mode copies the predictor into a Knative Service, so anything else fails there.
KNATIVE_POD_FIELDS = {
    "serviceAccountName",
    "containers",
    "volumes",
    "imagePullSecrets",
    "enableServiceLinks",
    "automountServiceAccountToken",  # false only
}
# behind config-features flags (kubernetes.podspec-nodeselector, -tolerations): gpu only, and
# deploy/README.md gives the command that enables them
KNATIVE_GPU_POD_FIELDS = {"nodeSelector", "tolerations"}
KNATIVE_CONTAINER_FIELDS = {
    "name",
    "args",
    "command",
    "env",
    "workingDir",
    "envFrom",
    "image",
    "imagePullPolicy",
    "livenessProbe",
    "ports",
    "readinessProbe",
    "resources",
    "securityContext",
    "startupProbe",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "volumeMounts",
}
KNATIVE_SECURITY_CONTEXT = {
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "seccompProfile",
}
KNATIVE_PORT_NAMES = {"", "h2c", "http1"}
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
# KServe v0.20.0 pkg/constants: the model server container, the storage initialiser's mount
KSERVE_CONTAINER = "kserve-container"
KSERVE_MODEL_DIR = "/mnt/models/"
# KEDA v2.20.2 pkg/scalers/prometheus_scaler.go: the trigger metadata it reads; the CRD
# declares metadata as a free string map, so a misspelt key would otherwise pass unnoticed
KEDA_PROMETHEUS_METADATA = {
    "serverAddress",
    "query",
    "queryParameters",
    "threshold",
    "activationThreshold",
    "namespace",
    "customHeaders",
    "ignoreNullValues",
    "unsafeSsl",
    "awsRegion",
    "timeout",
    "identityOwner",
}
# what the endpoint picker scrapes from each pod for engine type vllm, its default (llm-d
# router v0.10.0 pkg/epp/framework/plugins/datalayer/extractor/metrics/factories.go; the
# model-server protocol, gateway-api-inference-extension docs/proposals/003)
MODEL_SERVER_PROTOCOL = {
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:kv_cache_usage_perc",
}
# metrics the endpoint picker exports (llm-d router v0.10.0 docs/metrics.md), not the service
EPP_METRICS = {"llm_d_epp_flow_control_queue_size"}
PROMQL_METRIC = re.compile(r"\b([a-z_][a-z0-9_:]*)\s*\{")


# --- resolving a kustomization ----------------------------------------------------------------
def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The resources a kustomization applies: its files and folders, less `$patch: delete`.

    The generated kustomizations use nothing else (no generators, prefixes or other
    patches); anything else fails here, so this stays an exact model of kustomize for them.
    """
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "images", "patches"}
    assert set(kustomization) <= known, f"{folder}: {set(kustomization) - known}"
    found: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = (folder / resource).resolve()
        assert path.exists(), f"{folder}/kustomization.yaml lists {resource}, which is missing"
        found += kustomize(path) if path.is_dir() else documents(path)
    for entry in kustomization.get("patches", []):
        (patch,) = yaml.safe_load_all(entry["patch"])
        assert patch.pop("$patch") == "delete", "only `$patch: delete` is modelled"
        target = entry["target"]
        assert (target["kind"], target["name"]) == (patch["kind"], patch["metadata"]["name"])
        before = len(found)
        found = [
            d
            for d in found
            if (d["kind"], d["metadata"]["name"]) != (target["kind"], target["name"])
        ]
        assert len(found) == before - 1, f"the patch deletes nothing: {target}"
    for image in kustomization.get("images", []):
        assert set(image) == {"name", "newTag"}, "only retagging is modelled"
        for container in containers_of(found):
            name, _, tag = container["image"].rpartition(":")
            if name == image["name"]:
                assert tag == image["newTag"], "kustomization.yaml and the manifest disagree"
    return found


def containers_of(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for resource in resources:
        spec = resource.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("predictor") or {}
        found += pod.get("containers", [])
    return found


def folders(project: Path) -> dict[str, list[dict[str, Any]]]:
    deploy = project / "deploy"
    return {name: kustomize(deploy / name) for name in FOLDERS if (deploy / name).is_dir()}


def one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] == kind]
    return found


# --- the validator itself ---------------------------------------------------------------------
def test_validator_is_strict_where_kubernetes_is() -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
    }
    assert validate_custom_resource(route) == []
    typo = copy.deepcopy(route)
    typo["spec"]["rules"][0]["backendRef"] = typo["spec"]["rules"][0].pop("backendRefs")
    assert any("'backendRef' was unexpected" in e for e in validate_custom_resource(typo))
    wrong_type = copy.deepcopy(route)
    wrong_type["spec"]["rules"][0]["backendRefs"][0]["port"] = "80"
    assert validate_custom_resource(wrong_type)
    meta = copy.deepcopy(route)
    meta["metadata"]["lables"] = {}
    assert any("'lables' was unexpected" in e for e in validate_custom_resource(meta))
    bad_name = copy.deepcopy(route)
    bad_name["metadata"]["name"] = "Not_A_Name"
    assert validate_custom_resource(bad_name)
    unknown = {**route, "apiVersion": "gateway.networking.k8s.io/v9"}
    assert validate_custom_resource(unknown) == [
        "HTTPRoute r: no vendored CRD serves gateway.networking.k8s.io/v9 HTTPRoute"
    ]
    # int-or-string (a rolling update's maxSurge), and x-kubernetes-preserve-unknown-fields
    # (the InferenceService's status, the only such node in the vendored CRDs)
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {
            "predictor": {
                "containers": [{"name": KSERVE_CONTAINER, "image": "m:1"}],
                "deploymentStrategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            }
        },
        "status": {"anything": {"nested": [1, "two"]}},
    }
    assert validate_custom_resource(isvc) == []
    isvc["spec"]["predictor"]["deploymentStrategy"]["rollingUpdate"]["maxSurge"] = 1.5
    assert validate_custom_resource(isvc)
    assert set(served_schemas()) >= {
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("inference.networking.k8s.io/v1", "InferencePool"),
        ("llm-d.ai/v1alpha2", "InferenceObjective"),
    }


# --- every kubernetes=yes combination ---------------------------------------------------------
_BUILTIN: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("combination", KUBERNETES_COMBINATIONS)
def test_targets_validate_against_their_schemas(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    resolved = folders(project)
    expected = {"kserve/raw", "kserve/serverless"}
    if combination["monitoring"] == "prometheus":
        expected.add("keda")
        if combination["workload"] == "llm":
            expected.add("gateway")
    assert set(resolved) == expected
    failures = []
    for folder, resources in resolved.items():
        for resource in resources:
            if (resource["apiVersion"], resource["kind"]) in served_schemas():
                failures += [f"{folder}: {e}" for e in validate_custom_resource(resource)]
                continue
            text = json.dumps(resource, sort_keys=True)
            for version in KUBERNETES_VERSIONS:
                key = (hashlib.sha256(text.encode()).hexdigest(), version)
                if key not in _BUILTIN:
                    try:
                        kubernetes_validate.validate(resource, version, strict=True)
                        _BUILTIN[key] = ""
                    except (
                        kubernetes_validate.ValidationError,
                        kubernetes_validate.SchemaNotFoundError,
                    ) as exc:
                        _BUILTIN[key] = str(exc)[:2000]
                if _BUILTIN[key]:
                    failures.append(f"{folder}: {resource['kind']} ({version}): {_BUILTIN[key]}")
    assert not failures, "\n".join(failures)


def deployment_view(project: Path) -> dict[str, Any]:
    manifests = load_manifests(project)
    return {
        "deployment": manifests["Deployment"],
        "pod": manifests["Deployment"]["spec"]["template"]["spec"],
        "container": container_of(manifests["Deployment"]),
        "settings": manifests["ConfigMap"]["data"],
        "hpa": manifests["HorizontalPodAutoscaler"],
        "labels": manifests["Deployment"]["spec"]["template"]["metadata"]["labels"],
    }


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def check_predictor_env(container: dict[str, Any], k8s: dict[str, Any], project: Path) -> None:
    prefix = package_of(project).upper() + "_"
    values = env_values(container)
    model_path = values.pop(f"{prefix}MODEL_PATH")
    storage_uri = values.pop("STORAGE_URI")
    assert values == k8s["settings"], "the predictor's settings are deploy/k8s/configmap.yaml's"
    assert re.match(r"^[a-z0-9]+://", storage_uri), storage_uri
    settings = (project / "src" / package_of(project) / "settings.py").read_text()
    (default,) = re.findall(r'Path\("models/(model\.[a-z]+)"\)', settings)
    assert model_path == KSERVE_MODEL_DIR + default, "MODEL_PATH: the model the initialiser fetched"
    secrets = [e for e in container["env"] if "valueFrom" in e]
    assert secrets == [e for e in k8s["container"]["env"] if "valueFrom" in e], "the API key"


@pytest.mark.parametrize("combination", KUBERNETES_COMBINATIONS)
def test_kserve_predictors_match_the_deployment(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    k8s = deployment_view(project)
    resolved = folders(project)
    hpa = k8s["hpa"]["spec"]
    deployment_container = k8s["container"]

    raw = one(resolved["kserve/raw"], "InferenceService")
    assert raw["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = raw["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == KSERVE_CONTAINER
    for field in (
        "image",
        "imagePullPolicy",
        "ports",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "lifecycle",
        "securityContext",
        "volumeMounts",
    ):
        assert container[field] == deployment_container[field], f"raw predictor: {field}"
    check_predictor_env(container, k8s, project)
    for field in (
        "terminationGracePeriodSeconds",
        "securityContext",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "volumes",
    ):
        assert predictor[field] == k8s["pod"][field], f"raw predictor: {field}"
    for field in ("nodeSelector", "tolerations"):
        assert predictor.get(field) == k8s["pod"].get(field), f"raw predictor: {field}"
    assert predictor["deploymentStrategy"] == k8s["deployment"]["spec"]["strategy"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
    cpu = next(m for m in hpa["metrics"] if m["type"] == "Resource")["resource"]["target"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == (
        "cpu",
        cpu["averageUtilization"],
    )
    assert predictor["labels"].items() >= k8s["labels"].items()

    serverless = one(resolved["kserve/serverless"], "InferenceService")
    assert serverless["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    predictor = serverless["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == KSERVE_CONTAINER
    # Knative's subset of the pod spec (default features; gpu: two documented flags)
    allowed_pod = KNATIVE_POD_FIELDS | (
        KNATIVE_GPU_POD_FIELDS if combination["device"] == "gpu" else set()
    )
    pod_fields = set(predictor) - {
        "minReplicas",
        "maxReplicas",
        "scaleMetric",
        "scaleTarget",
        "timeout",
        "labels",
        "annotations",
    }
    assert pod_fields <= allowed_pod, f"Knative refuses {pod_fields - allowed_pod}"
    assert predictor["automountServiceAccountToken"] is False
    assert set(container) <= KNATIVE_CONTAINER_FIELDS, set(container) - KNATIVE_CONTAINER_FIELDS
    assert set(container["securityContext"]) <= KNATIVE_SECURITY_CONTEXT
    (port,) = container["ports"]
    (k8s_port,) = deployment_container["ports"]
    assert port.get("name", "") in KNATIVE_PORT_NAMES
    assert port["containerPort"] == k8s_port["containerPort"] not in KNATIVE_RESERVED_PORTS
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        ours, theirs = container[probe], deployment_container[probe]
        assert ours["httpGet"]["port"] in (port["containerPort"], port.get("name", "")), probe
        assert ours["httpGet"]["path"] == theirs["httpGet"]["path"], probe
        for timing in ("periodSeconds", "timeoutSeconds", "failureThreshold"):
            assert ours[timing] == theirs[timing], f"{probe}.{timing}"
    for field in ("image", "imagePullPolicy", "resources", "volumeMounts"):
        assert container[field] == deployment_container[field], f"serverless predictor: {field}"
    check_predictor_env(container, k8s, project)
    # the security context: the container's, plus the pod's user and seccomp profile
    pod_security = {k: v for k, v in k8s["pod"]["securityContext"].items() if k != "fsGroup"}
    assert container["securityContext"] == {
        **deployment_container["securityContext"],
        **pod_security,
    }
    # the drain: Knative's preStop, and a grace period Knative derives from `timeout`
    assert predictor["timeout"] == k8s["pod"]["terminationGracePeriodSeconds"]
    assert predictor["volumes"] == k8s["pod"]["volumes"]
    assert predictor["minReplicas"] == 0 and predictor["maxReplicas"] == hpa["maxReplicas"]
    assert predictor["scaleMetric"] == "concurrency"
    expected_target = 24 if combination["batching"] == "dynamic" else 2
    assert predictor["scaleTarget"] == expected_target
    pods_metrics = [
        m["pods"]["target"]["averageValue"] for m in hpa["metrics"] if m["type"] == "Pods"
    ]
    assert pods_metrics in ([], [str(expected_target)]), "the HPA's in-flight target"
    assert (
        "canaryTrafficPercent"
        in (project / "deploy/kserve/serverless/inferenceservice.yaml").read_text()
    )


def metrics_source(project: Path) -> str:
    """The service's metrics modules: the shared one and its workload's (llm/metrics.py)."""
    package = project / "src" / package_of(project)
    return "\n".join(path.read_text() for path in sorted(package.rglob("metrics.py")))


def exported_metric_names(project: Path) -> set[str]:
    """inference_* names defined in the service's metrics modules (f"{PREFIX}_<name>")."""
    text = metrics_source(project)
    assert 'PREFIX = "inference"' in text
    return {f"inference_{name}" for name in re.findall(r'f"\{PREFIX\}_([a-z_]+)"', text)}


_PROMTOOL: dict[str, str] = {}


def promql_errors(queries: list[str]) -> str:
    """promtool's verdict on the queries, as recording rules (syntax and types)."""
    rules = {
        "groups": [{"name": "keda", "rules": [{"record": "keda:q", "expr": q} for q in queries]}]
    }
    text = yaml.safe_dump(rules)
    if text not in _PROMTOOL:
        result = subprocess.run(
            [PROMTOOL, "check", "rules", "/dev/stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        _PROMTOOL[text] = "" if result.returncode == 0 else result.stdout + result.stderr
    return _PROMTOOL[text]


@pytest.mark.parametrize(
    "combination",
    [c for c in KUBERNETES_COMBINATIONS if c.values[0]["monitoring"] == "prometheus"],
)
def test_keda_scales_the_deployment_on_exported_signals(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    k8s = deployment_view(project)
    resolved = folders(project)["keda"]
    assert {r["kind"] for r in resolved} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
    }, "deploy/k8s without its HPA, plus the ScaledObject"
    assert one(resolved, "Deployment") == k8s["deployment"]
    spec = one(resolved, "ScaledObject")["spec"]
    deployment = k8s["deployment"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    hpa = k8s["hpa"]["spec"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]
    assert spec["maxReplicaCount"] == hpa["maxReplicas"]
    llm = combination["workload"] == "llm"
    # scale to zero where something reports demand with no pod running (the gateway's queue)
    assert spec["minReplicaCount"] == (0 if llm else 1)
    exported = exported_metric_names(project)
    queries = []
    names = []
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        metadata = trigger["metadata"]
        assert set(metadata) <= KEDA_PROMETHEUS_METADATA, set(metadata) - KEDA_PROMETHEUS_METADATA
        assert float(metadata["threshold"]) > float(metadata["activationThreshold"]) >= 0
        queries.append(metadata["query"])
        names += PROMQL_METRIC.findall(metadata["query"])
    used = set(names) - EPP_METRICS
    assert used and used <= exported, f"queried but not exported: {used - exported}"
    signals = (
        {"inference_running_sequences", "inference_waiting_sequences"}
        if llm
        else {"inference_in_flight_requests", "inference_queue_depth"}
    )
    assert used == signals
    assert (set(names) & EPP_METRICS) == (EPP_METRICS if llm else set())
    # the pod selector matches this Deployment's pods, not those of a longer-named neighbour
    name = deployment["metadata"]["name"]
    (selector,) = set(re.findall(r'pod=~"([^"]+)"', " ".join(queries)))
    assert re.fullmatch(selector, f"{name}-5d4f8c7b9-x2x7q")
    assert not re.fullmatch(selector, f"{name}-canary-5d4f8c7b9-x2x7q")
    if PROMTOOL:
        assert not promql_errors(queries), promql_errors(queries)


@pytest.mark.parametrize(
    "combination",
    [
        c
        for c in KUBERNETES_COMBINATIONS
        if c.values[0]["monitoring"] == "prometheus" and c.values[0]["workload"] == "llm"
    ],
)
def test_gateway_routes_to_the_deployments_pods(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    k8s = deployment_view(project)
    resolved = folders(project)["gateway"]
    pool = one(resolved, "InferencePool")
    assert pool["spec"]["selector"]["matchLabels"].items() <= k8s["labels"].items()
    (port,) = k8s["container"]["ports"]
    assert pool["spec"]["targetPorts"] == [{"number": port["containerPort"]}]
    picker = pool["spec"]["endpointPickerRef"]
    # CEL rule of the CRD: a Service reference (the default kind) needs its port
    assert picker.get("kind", "Service") != "Service" or "port" in picker
    objectives = [r for r in resolved if r["kind"] == "InferenceObjective"]
    assert objectives
    for objective in objectives:
        assert objective["spec"]["poolRef"] == {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": pool["metadata"]["name"],
        }
    route = one(resolved, "HTTPRoute")
    backends = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
    assert backends == [
        {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": pool["metadata"]["name"],
        }
    ]
    assert route["spec"]["parentRefs"]
    # the pods speak the model-server protocol the picker scrapes them for
    metrics = metrics_source(project)
    defined = set(re.findall(r'^VLLM_[A-Z_]+ = "([^"]+)"$', metrics, flags=re.MULTILINE))
    assert defined == MODEL_SERVER_PROTOCOL


# --- kubectl kustomize agrees with the resolution above ----------------------------------------
@pytest.mark.parametrize(
    "combination",
    [
        pytest.param(c, id=combination_id(c), marks=pytest.mark.xdist_group(combination_id(c)))
        for c in RENDERED
    ],
)
def test_kubectl_kustomize_renders_what_is_validated(baked, combination: dict[str, str]) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the kustomizations are only resolved in Python")
    project = baked(combination)
    for folder, resources in folders(project).items():
        result = subprocess.run(
            [KUBECTL, "kustomize", str(project / "deploy" / folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"kubectl kustomize deploy/{folder}:\n{result.stderr}"
        rendered = [d for d in yaml.safe_load_all(result.stdout) if d is not None]

        def key(resource: dict[str, Any]) -> tuple[str, str]:
            return resource["kind"], resource["metadata"]["name"]

        assert sorted(rendered, key=key) == sorted(resources, key=key), folder


def test_rendered_sample_covers_every_workload() -> None:
    assert {c["workload"] for c in RENDERED} == set(OPTIONS["workload"])
    assert all(c in all_combinations() for c in RENDERED)
