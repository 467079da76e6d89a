"""Deployment artefacts of every combination: Dockerfile, compose.yaml, deploy/k8s.

Per combination (each baked once per worker; its tests share an xdist group): hadolint
passes on the Dockerfile at the strictest threshold; every Kubernetes manifest validates,
strictly, against the pinned Kubernetes versions (custom resources against their vendored
upstream CRD schemas, tests/crd_schemas.py); compose.yaml and kustomization.yaml parse
and reference only files that exist; the artefacts agree with each other and with the
service (probes, drain budget, selectors, ports, users, setting names and values).

Marker ``container``: for one onnxruntime and one torch cpu combination the Dockerfile's
build and CMD run without Docker (tests/container_dryrun.py); where a Docker engine answers,
the default combination's image is built and must turn healthy.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .combinations import CONFIG, DEFAULTS, all_combinations, combination_id
from .container_dryrun import DryRun, DryRunError
from .crd_schemas import SCHEMAS, CrdSchemas
from .dockerfile import DockerIgnore, Stage, parse_file, stage_env

# The oldest Kubernetes release the manifests support, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
HADOLINT = Path(sys.executable).parent / "hadolint"
MANIFEST_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
}
# custom resources (kubernetes-validate knows only built-in kinds): their upstream CRD schemas
CRDS = CrdSchemas.load(SCHEMAS / "prometheus-operator")
SECURE_MARGIN_S = 5  # terminationGracePeriodSeconds beyond preStop pause + SHUTDOWN_TIMEOUT_S


def grouped(combinations: list[dict[str, str]]) -> list[Any]:
    """One xdist group per combination: its tests share a worker, so it is baked once."""
    return [
        pytest.param(c, id=combination_id(c), marks=pytest.mark.xdist_group(combination_id(c)))
        for c in combinations
    ]


COMBINATIONS = grouped(all_combinations())
KUBERNETES_COMBINATIONS = grouped([c for c in all_combinations() if c["kubernetes"] == "yes"])


# --- reading the artefacts ---------------------------------------------------------------
def package_of(project: Path) -> str:
    (package,) = [
        path.name for path in (project / "src").iterdir() if path.is_dir() and "." not in path.name
    ]
    return package


def load_manifests(project: Path) -> dict[str, dict[str, Any]]:
    """kind -> the one object of that kind in deploy/k8s (kustomization.yaml excluded)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((project / "deploy" / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert document["kind"] not in found, f"two {document['kind']} objects"
            found[document["kind"]] = document
    return found


def runtime_stage(project: Path) -> tuple[list[Stage], Stage]:
    stages = parse_file(project / "Dockerfile")
    return stages, stages[-1]


def healthcheck_of(stage: Stage) -> tuple[dict[str, str], list[str]]:
    instruction = stage.last("HEALTHCHECK")
    assert instruction is not None, "the runtime stage has no HEALTHCHECK"
    kind, _, command = instruction.args.partition(" ")
    assert kind == "CMD"
    argv = json.loads(command)
    return instruction.flags, argv


def seconds(value: str | int) -> float:
    """Docker/compose durations: 45s, 2m, 1m30s, or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", value.strip())
    assert parts and value.strip(), f"cannot read the duration {value!r}"
    hours, minutes, secs = (float(part) if part else 0.0 for part in parts.groups())
    return hours * 3600 + minutes * 60 + secs


# --- the Dockerfile ------------------------------------------------------------------------
_HADOLINT: dict[str, subprocess.CompletedProcess[str]] = {}


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint at the strictest threshold, once per distinct Dockerfile content."""
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    if digest not in _HADOLINT:
        _HADOLINT[digest] = subprocess.run(
            [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(dockerfile)],
            cwd=dockerfile.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    return _HADOLINT[digest]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_dockerfile_passes_hadolint(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    dockerfile = project / "Dockerfile"
    assert "hadolint ignore" not in dockerfile.read_text(), "no rule may be switched off"
    assert not list(project.glob(".hadolint*")), "no hadolint configuration may relax the rules"
    result = hadolint(dockerfile)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_dockerfile_shape(baked, combination: dict[str, str]) -> None:
    """Multi-stage, pinned bases, non-root, exec-form CMD and HEALTHCHECK on /health/ready."""
    project = baked(combination)
    stages, runtime = runtime_stage(project)
    names = [stage.name for stage in stages]
    assert {"builder", "model", "runtime"} <= set(names), names
    for stage in stages:
        if stage.base in names or stage.base == "scratch":  # scratch: the empty image
            continue
        image, _, tag = stage.base.rpartition(":")
        assert image and re.search(r"\d+\.\d+\.\d+", tag), f"{stage.base}: pin an exact version tag"
    if combination["device"] == "gpu":
        assert any(stage.base.startswith("nvidia/cuda:13.") for stage in stages), "CUDA 13 base"
    else:
        python = combination.get("python_version", CONFIG["python_version"])
        assert any(stage.base.startswith(f"python:{python}.") for stage in stages)
    user = runtime.last("USER")
    assert user is not None and user.args.split(":")[0] not in {"0", "root"}, "runs as non-root"
    cmd = runtime.last("CMD")
    assert cmd is not None and cmd.exec_form() == ["python", "-m", package_of(project)]
    flags, argv = healthcheck_of(runtime)
    assert argv == ["python", "-m", f"{package_of(project)}.healthcheck"]
    assert seconds(flags["start-period"]) >= 60
    # what the build copies from the context exists and passes .dockerignore, which keeps
    # secrets, local models and environments out of the context
    ignore = DockerIgnore.of(project)
    for stage in stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            for source in shlex.split(copy.args)[:-1]:
                assert (project / source).exists(), f"COPY {source}: not in the project"
                assert not ignore.excluded(source), f"COPY {source}: excluded by .dockerignore"
    for private in (
        ".env",
        "models/model.onnx",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
    ):
        assert ignore.excluded(private), f".dockerignore lets {private} into the build context"
    # the runtime image carries the venv and the model only, never the sources or build tools
    copies = runtime.all("COPY")
    assert copies and all("from" in copy.flags for copy in copies), (
        "runtime copies from stages only"
    )


# --- compose.yaml -------------------------------------------------------------------------
def bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
        else:
            source = volume.get("source", "") if volume.get("type") == "bind" else ""
        if source.startswith(("./", "../", "/")):
            sources.append(source)
    return sources


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_compose_parses_and_references_existing_files(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]
    app = services["app"]
    context = project / app["build"]["context"]
    assert (context / app["build"].get("dockerfile", "Dockerfile")).is_file()
    for name, service in services.items():
        for source in bind_sources(service):
            assert (project / source).exists(), f"{name} mounts {source}, which the project lacks"
        for env_file in service.get("env_file", []):
            entry = env_file if isinstance(env_file, dict) else {"path": env_file}
            assert entry.get("required", True) is False or (project / entry["path"]).exists()
    _, runtime = runtime_stage(project)
    _, argv = healthcheck_of(runtime)
    assert app["healthcheck"]["test"] == ["CMD", *argv], "compose checks what the image checks"
    devices = app.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if combination["device"] == "gpu":
        assert any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        )
    else:
        assert not devices
    monitoring = {
        name for name, service in services.items() if "monitoring" in service.get("profiles", [])
    }
    if combination["monitoring"] == "prometheus":
        assert monitoring == {"prometheus", "grafana"}
    else:
        assert not monitoring and set(services) == {"app"}
    assert app.get("read_only") is True and "/tmp" in app.get("tmpfs", [])


# --- deploy/k8s -----------------------------------------------------------------------------
_VALIDATED: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("combination", KUBERNETES_COMBINATIONS)
def test_manifests_validate_strictly(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    manifests = sorted((project / "deploy" / "k8s").glob("*.yaml"))
    assert manifests
    failures = []
    for path in manifests:
        if path.name == "kustomization.yaml":
            continue
        text = path.read_text()
        for version in KUBERNETES_VERSIONS:
            key = (hashlib.sha256(text.encode()).hexdigest(), version)
            if key not in _VALIDATED:
                problems = []
                for document in yaml.safe_load_all(text):
                    if CRDS.knows(document):
                        problems += CRDS.validate(document, version)
                        continue
                    try:
                        kubernetes_validate.validate(document, version, strict=True)
                    except (
                        kubernetes_validate.ValidationError,
                        kubernetes_validate.SchemaNotFoundError,
                    ) as exc:
                        problems.append(str(exc))
                _VALIDATED[key] = "\n".join(problems)
            if _VALIDATED[key]:
                failures.append(f"{path.name} (Kubernetes {version}): {_VALIDATED[key]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("combination", KUBERNETES_COMBINATIONS)
def test_kustomization_references_existing_files(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    folder = project / "deploy" / "k8s"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    for resource in resources:
        assert (folder / resource).is_file(), (
            f"kustomization.yaml lists {resource}, which is missing"
        )
    on_disk = {path.name for path in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == on_disk, "every manifest is applied, and only those"
    deployment = load_manifests(project)["Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert [entry["name"] for entry in kustomization["images"]] == [image.rsplit(":", 1)[0]]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("combination", KUBERNETES_COMBINATIONS)
def test_manifests_agree_with_each_other_and_the_image(baked, combination: dict[str, str]) -> None:
    project = baked(combination)
    manifests = load_manifests(project)
    monitoring = combination["monitoring"] == "prometheus"
    assert set(manifests) == MANIFEST_KINDS | ({"PrometheusRule"} if monitoring else set())
    deployment, service = manifests["Deployment"], manifests["Service"]
    hpa, pdb, config = (
        manifests["HorizontalPodAutoscaler"],
        manifests["PodDisruptionBudget"],
        manifests["ConfigMap"],
    )
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for what, labels in [
        ("Deployment", selector),
        ("Service", service["spec"]["selector"]),
        ("PDB", pdb["spec"]["selector"]["matchLabels"]),
    ]:
        assert labels and labels.items() <= pod_labels.items(), (
            f"the {what} selector misses the pods"
        )
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1

    stages, runtime = runtime_stage(project)
    image_env = stage_env(stages, runtime)
    prefix = package_of(project).upper() + "_"
    container = container_of(deployment)
    (port,) = container["ports"]
    assert port["name"] == "http" and port["containerPort"] == int(image_env[f"{prefix}PORT"])
    expose = runtime.last("EXPOSE")
    assert expose is not None and int(expose.args.split("/")[0]) == port["containerPort"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    # probes: startup covers load + warmup (at least the image's health start period)
    probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert probes["startupProbe"]["httpGet"]["path"] in {"/health/live", "/health/ready"}
    assert all(probe["httpGet"]["port"] == "http" for probe in probes.values())
    startup = probes["startupProbe"]
    flags, _ = healthcheck_of(runtime)
    assert startup["periodSeconds"] * startup["failureThreshold"] >= seconds(flags["start-period"])

    # drain: grace >= preStop pause + SHUTDOWN_TIMEOUT_S + margin
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    shutdown_s = float(config["data"][f"{prefix}SHUTDOWN_TIMEOUT_S"])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(command[1]) + shutdown_s + SECURE_MARGIN_S, (grace, command, shutdown_s)

    # security: non-root as the image's user, read-only root, no capabilities, writable /tmp
    pod_security = pod["spec"]["securityContext"]
    user = runtime.last("USER")
    assert user is not None and pod_security["runAsUser"] == int(user.args.split(":")[0])
    assert (
        pod_security["runAsNonRoot"] is True
        and pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    )
    security = container["securityContext"]
    assert (
        security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    )
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    tmp = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
    assert pod["spec"]["automountServiceAccountToken"] is False
    # Service links would set <SERVICE>_PORT=tcp://...; the Service is named after the
    # project, so that is <PACKAGE>_PORT, the PORT setting: the second rollout would crash
    service_port_variable = service["metadata"]["name"].upper().replace("-", "_") + "_PORT"
    if service_port_variable == f"{prefix}PORT":
        assert pod["spec"].get("enableServiceLinks") is False, "service links override PORT"

    # settings from the ConfigMap, the API key from an optional Secret
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    (api_key,) = [env for env in container["env"] if env["name"] == f"{prefix}API_KEY"]
    assert api_key["valueFrom"]["secretKeyRef"]["optional"] is True

    # resources: Guaranteed QoS, thread pools sized to the CPU limit, a GPU on gpu builds
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]
    assert config["data"][f"{prefix}INTRA_OP_THREADS"] == str(resources["limits"]["cpu"])
    spec = pod["spec"]
    if combination["device"] == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert any(
            t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule"
            for t in spec["tolerations"]
        )
        assert spec["nodeSelector"]
        assert config["data"][f"{prefix}DEVICE"] == "cuda"
    else:
        assert (
            "nvidia.com/gpu" not in resources["limits"]
            and "tolerations" not in spec
            and "nodeSelector" not in spec
        )

    # autoscaling: CPU always; with monitoring also requests in flight per pod (an exported metric)
    metrics = hpa["spec"]["metrics"]
    assert {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    } in metrics
    pods_metrics = [
        metric["pods"]["metric"]["name"] for metric in metrics if metric["type"] == "Pods"
    ]
    if combination["monitoring"] == "prometheus":
        assert pods_metrics == ["inference_in_flight_requests"]
        exported = (project / "src" / package_of(project) / "metrics.py").read_text()
        assert '_in_flight_requests"' in exported and 'PREFIX = "inference"' in exported
        readme = (project / "deploy" / "k8s" / "README.md").read_text()
        assert "seriesQuery: 'inference_in_flight_requests" in readme, (
            "the adapter rule is documented"
        )
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    else:
        assert pods_metrics == []


@pytest.mark.parametrize(
    "combination", [c for c in KUBERNETES_COMBINATIONS if c.values[0]["monitoring"] == "prometheus"]
)
def test_prometheusrule_carries_the_compose_alerts(baked, combination: dict[str, str]) -> None:
    """One set of rules: the PrometheusRule's groups are deploy/prometheus/alerts.yml's."""
    project = baked(combination)
    rule = load_manifests(project)["PrometheusRule"]
    alerts = yaml.safe_load((project / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == project.name


SETTINGS_PROBE = """
import json, os, sys
from {package}.settings import ENV_PREFIX, Settings

sources = json.loads(sys.argv[1])
fields = {{ENV_PREFIX + name.upper() for name in Settings.model_fields}}
report = {{}}
for label, env in sources.items():
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        del os.environ[name]
    os.environ.update(env)
    unknown = sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in fields)
    try:
        settings = Settings(_env_file=None)
        values = {{name: str(getattr(settings, name)) for name in ("port", "shutdown_timeout_s")}}
        report[label] = {{"unknown": unknown, "error": None, "values": values}}
    except Exception as exc:
        report[label] = {{"unknown": unknown, "error": str(exc), "values": {{}}}}
print(json.dumps(report))
"""


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_environment_names_real_settings(baked, combination: dict[str, str]) -> None:
    """Every <PACKAGE>_* variable the artefacts set is a setting, and its value validates.

    pydantic-settings ignores unknown variables, so a misspelt name would silently do nothing.
    """
    project = baked(combination)
    package = package_of(project)
    prefix = package.upper() + "_"
    stages, runtime = runtime_stage(project)
    sources: dict[str, dict[str, str]] = {
        "Dockerfile": {k: v for k, v in stage_env(stages, runtime).items() if k.startswith(prefix)}
    }
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    environment = compose["services"]["app"].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    sources["compose.yaml"] = {k: str(v) for k, v in environment.items()}
    if combination["kubernetes"] == "yes":
        manifests = load_manifests(project)
        sources["configmap.yaml"] = manifests["ConfigMap"]["data"]
        container = container_of(manifests["Deployment"])
        sources["deployment.yaml"] = {
            env["name"]: "set-by-a-secret" for env in container.get("env", [])
        }
        # the KServe predictors set the settings themselves (a change is a new revision)
        for variant in ("raw", "serverless"):
            path = project / "deploy" / "kserve" / variant / "inferenceservice.yaml"
            (predictor,) = yaml.safe_load(path.read_text())["spec"]["predictor"]["containers"]
            sources[f"kserve/{variant}"] = {
                env["name"]: env.get("value", "set-by-a-secret") for env in predictor["env"]
            }
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE.format(package=package), json.dumps(sources)],
        cwd=project,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for label, outcome in report.items():
        assert not outcome["unknown"], (
            f"{label} sets variables no setting reads: {outcome['unknown']}"
        )
        assert outcome["error"] is None, f"{label}: {outcome['error']}"
    defaults = report["compose.yaml"]["values"]
    app = compose["services"]["app"]
    assert (
        seconds(app["stop_grace_period"]) >= float(defaults["shutdown_timeout_s"]) + SECURE_MARGIN_S
    )
    assert f"{defaults['port']}:{defaults['port']}" in app["ports"][0]


# --- the container, without Docker (marker: container) ---------------------------------------
DRY_RUNS = [
    {**DEFAULTS, "backend": "onnxruntime", "device": "cpu"},
    {**DEFAULTS, "backend": "torch", "device": "cpu"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base_url: str, alive: Callable[[], bool], timeout_s: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if not alive():
            raise AssertionError("the container's process exited before it was ready")
        try:
            status, _ = http(f"{base_url}/health/ready", timeout=2)
            if status == 200:
                return time.perf_counter() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready within {timeout_s} s")


def png_bytes(size: int = 96) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (size, size))
    image.putdata(
        [
            ((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256)
            for y in range(size)
            for x in range(size)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(field: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "dryrun-boundary-7c1e"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def infer_vision(base_url: str) -> str:
    body, content_type = multipart("file", "probe.png", png_bytes(), "image/png")
    status, answer = http(
        f"{base_url}/v1/classify?k=3", data=body, headers={"Content-Type": content_type}, timeout=30
    )
    assert status == 200, answer[:500]
    predictions = json.loads(answer)["predictions"]
    assert len(predictions) == 3 and all(0.0 <= p["score"] <= 1.0 for p in predictions)
    return f"POST /v1/classify -> {predictions[0]['label']} ({predictions[0]['score']:.3f})"


def infer_tts(base_url: str) -> str:
    status, answer = http(f"{base_url}/v1/models", timeout=10)
    assert status == 200, answer[:500]
    model = json.loads(answer)["data"][0]["id"]
    import soundfile

    request = {"model": model, "input": "Hello from the container.", "voice": "alloy"}
    answers = {}
    for response_format in ("wav", "mp3"):  # mp3: the default, through the image's PyAV
        status, answers[response_format] = http(
            f"{base_url}/v1/audio/speech",
            data=json.dumps({**request, "response_format": response_format}).encode(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert status == 200, answers[response_format][:500]
    audio = answers["wav"]
    with wave.open(io.BytesIO(audio)) as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
    assert frames > 0 and len(audio) == 44 + 2 * frames
    mp3, mp3_rate = soundfile.read(io.BytesIO(answers["mp3"]))
    assert mp3_rate == rate and len(mp3) >= frames
    return f"POST /v1/audio/speech -> {frames / rate:.2f} s of {rate} Hz WAV, and as MP3"


# one real inference request per workload, over plain HTTP
INFERENCE: dict[str, Callable[[str], str]] = {"vision": infer_vision, "tts": infer_tts}


@pytest.fixture
def process_cleanup() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.container
@pytest.mark.parametrize(
    "combination",
    [
        pytest.param(
            c, id=f"dryrun-{c['backend']}", marks=pytest.mark.xdist_group(f"dryrun-{c['backend']}")
        )
        for c in DRY_RUNS
    ],
)
def test_container_install_and_entrypoint_without_docker(
    baked, tmp_path, process_cleanup, combination: dict[str, str]
) -> None:
    """Fresh venv from the Dockerfile's RUN steps, the model stage, then the image's CMD serves."""
    if combination["workload"] not in INFERENCE:
        pytest.fail(f"add a request for the {combination['workload']} workload to INFERENCE")
    project = baked(combination)
    prefix = package_of(project).upper() + "_"
    run = DryRun(project, tmp_path / "image")
    started = time.perf_counter()
    try:
        run.build()
    except DryRunError as exc:
        pytest.fail(f"the Dockerfile's build failed:\n{exc}\n{run.report.render()}")

    # the runtime stage holds the venv and the model, not the sources or build-only packages
    assert not (run.root / "build").exists()
    site_packages = list((run.root / "opt" / "venv" / "lib").glob("python3*/site-packages"))
    assert len(site_packages) == 1
    installed = {path.name.split("-")[0].lower() for path in site_packages[0].glob("*.dist-info")}
    assert package_of(project) in installed
    assert "onnx" not in installed, "the demo model's build dependency leaked into the image"
    if combination["backend"] == "onnxruntime":
        assert "torch" not in installed, "an onnxruntime service must not carry torch"

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = run.environment(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port)})
    argv = run.command("CMD")
    python = run.resolve(argv[0], env)
    assert Path(python).is_relative_to(run.root), (
        f"CMD's {argv[0]} is {python}, not the image's venv"
    )
    log = (tmp_path / "container.log").open("wb")
    process = subprocess.Popen(argv, cwd=run.cwd(), env=env, stdout=log, stderr=subprocess.STDOUT)
    process_cleanup.append(process)
    try:
        ready_after = wait_ready(base_url, lambda: process.poll() is None, timeout_s=240)
        health = subprocess.run(
            run.command("HEALTHCHECK"),
            cwd=run.cwd(),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert health.returncode == 0, (
            f"the image's HEALTHCHECK failed: {health.stdout}{health.stderr}"
        )
        inference = INFERENCE[combination["workload"]](base_url)
        process.send_signal(signal.SIGTERM)  # docker stop
        assert process.wait(timeout=60) == 0, "SIGTERM must drain and exit 0"
    except BaseException:
        log.close()
        print((tmp_path / "container.log").read_text(errors="replace")[-6000:])
        raise
    log.close()
    total = time.perf_counter() - started
    print(
        f"\ncontainer dry run {combination_id(combination)}: {total:.1f} s in all\n"
        f"{run.report.render()}\n"
        f"  ready {ready_after:.1f} s after start; {inference}; SIGTERM -> exit 0"
    )


# --- the image, with Docker where one answers (marker: container) -----------------------------
def docker_client() -> Any:
    try:
        import docker  # only this test needs it

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception as exc:  # no package, no socket, no permission: all mean "no engine here"
        message = (
            f"no Docker engine reachable ({type(exc).__name__}: {exc}); "
            "the image build is not tested here"
        )
        print(message)
        pytest.skip(message)


@pytest.mark.container
@pytest.mark.xdist_group("docker")
def test_default_image_builds_and_turns_healthy(baked) -> None:
    client = docker_client()
    combination = dict(DEFAULTS)
    project = baked(combination)
    tag = f"ai-service-template-test:{combination_id(combination)}"
    image = None
    container = None
    try:
        image, _ = client.images.build(path=str(project), tag=tag, rm=True, forcerm=True)
        container = client.containers.run(
            image.id, detach=True, ports={"8000/tcp": ("127.0.0.1", None)}
        )
        deadline = time.monotonic() + 300
        status = "starting"
        while time.monotonic() < deadline:
            container.reload()
            status = container.attrs["State"].get("Health", {}).get("Status", "none")
            if status in {"healthy", "unhealthy"} or container.status == "exited":
                break
            time.sleep(2)
        logs = container.logs(tail=50).decode(errors="replace")
        assert status == "healthy", f"health {status}, container {container.status}:\n{logs}"
        host_port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        print(INFERENCE[combination["workload"]](f"http://127.0.0.1:{host_port}"))
        container.stop(timeout=60)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, "SIGTERM must drain and exit 0"
    finally:
        if container is not None:
            container.remove(force=True)
        if image is not None:
            client.images.remove(image.id, force=True)
