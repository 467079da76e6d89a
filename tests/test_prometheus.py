"""The monitoring artefacts, proven with Prometheus' own tools.

promtool (every workload x device with monitoring=prometheus): ``check config`` on the
generated prometheus.yml (which loads alerts.yml), ``check rules`` on alerts.yml and
``test rules`` on alerts.test.yml, whose cases must cover every alert, fired and not fired.

A real Prometheus (marker ``slow``; one combination per workload, plus a gpu build with a fake
NVML for the GPU panels): the baked service runs with its demo model, Prometheus scrapes it
every second with the generated job and rules, traffic flows (every route, a 4xx, a burst
that overflows the queue into 503s), and then every Grafana panel query and template
variable, every recording and alert rule expression (and each series selector in them), the
Prometheus Adapter rule the HPA reads, and any KEDA Prometheus trigger are evaluated through
the HTTP API: each must return data of the expected type with the labels its legend uses.

Both binaries come from Debian's ``prometheus`` package (``make tools`` installs it): a
missing binary fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .combinations import DEFAULTS, OPTIONS
from .conftest import assert_ok, run
from .prometheus_traffic import OVERLOAD_SETTINGS, traffic

PACKAGE = "ai_service"
ENV = PACKAGE.upper() + "_"
PAIRS = [(workload, device) for workload in OPTIONS["workload"] for device in OPTIONS["device"]]
PAIR_IDS = [f"{workload}-{device}" for workload, device in PAIRS]
LIVE = [(workload, "cpu") for workload in OPTIONS["workload"]] + [("vision", "gpu")]
LIVE_IDS = [f"{workload}-{device}" for workload, device in LIVE]
RATE_INTERVAL = "5m"  # Grafana's $__rate_interval here: all the traffic, even on a slow machine
NAMESPACE = "inference-test"  # the labels a Kubernetes scrape adds, for the adapter rule
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# a series selector: a metric of the service, a recorded series, or `up`
STATUS_MATCHER = re.compile(r',?\s*status(?:=~|!~|!=|=)"[^"]*"')
SELECTOR = re.compile(r"\b((?:inference_|job:|instance_gpu:)[a-zA-Z0-9_:]+|up\b)(\{[^}]*\})?")

# Panels that have no data yet for a workload, and why: each must really be empty (the test
# fails once it is not, so that the entry is removed with the fix).
KNOWN_EMPTY: dict[tuple[str, str], str] = {}

# One GPU for gpu builds on this CPU-only machine: NVML answers through this module
# instead of the driver (the service's GpuCollector reads it at every scrape).
FAKE_NVML = """
import types

class NVMLError(Exception):
    pass

def nvmlInit():
    return None

def nvmlDeviceGetCount():
    return 1

def nvmlDeviceGetHandleByIndex(index):
    return index

def nvmlDeviceGetUUID(handle):
    return "GPU-00000000-0000-0000-0000-000000000000"

def nvmlDeviceGetMemoryInfo(handle):
    return types.SimpleNamespace(used=3 * 2**30, total=16 * 2**30, free=13 * 2**30)

def nvmlDeviceGetUtilizationRates(handle):
    return types.SimpleNamespace(gpu=42, memory=10)
"""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make tools` installs Debian's prometheus package")
    return path


@pytest.fixture(scope="module")
def baked(cookies_session) -> Any:  # type: ignore[no-untyped-def]
    """Bake once per (workload, device) with monitoring and Kubernetes manifests."""
    projects: dict[tuple[str, str], Path] = {}

    def _bake(workload: str, device: str) -> Path:
        if (workload, device) not in projects:
            context = {
                **DEFAULTS,
                "workload": workload,
                "device": device,
                "monitoring": "prometheus",
                "kubernetes": "yes",
            }
            result = cookies_session.bake(extra_context=context)
            assert result.exception is None, f"bake failed: {result.exception}"
            projects[(workload, device)] = Path(result.project_path)
        return projects[(workload, device)]

    return _bake


# --- promtool ---------------------------------------------------------------------------------
def alert_rules(alerts: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alerts["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize(("workload", "device"), PAIRS, ids=PAIR_IDS)
def test_promtool_checks_config_rules_and_unit_tests(baked, workload: str, device: str) -> None:
    folder = baked(workload, device) / "deploy" / "prometheus"
    promtool = tool("promtool")
    config = run([promtool, "check", "config", "prometheus.yml"], folder)
    assert_ok(config, "promtool check config")
    assert "1 rule files found" in config.stdout + config.stderr  # it checked alerts.yml too
    assert_ok(run([promtool, "check", "rules", "alerts.yml"], folder), "promtool check rules")
    assert_ok(run([promtool, "test", "rules", "alerts.test.yml"], folder), "promtool test rules")

    # every alert rule has a case where it fires and one where it does not
    alerts = yaml.safe_load((folder / "alerts.yml").read_text())
    tests = yaml.safe_load((folder / "alerts.test.yml").read_text())
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    for rule in alert_rules(alerts):
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        fired = [
            alert["exp_labels"]
            for case in mine
            for alert in case.get("exp_alerts") or []
            if rule["labels"].items() <= alert["exp_labels"].items()
        ]
        assert fired, f"no test where {rule['alert']} {rule['labels']} fires"
        assert any(not case.get("exp_alerts") for case in mine), (
            f"no test where {rule['alert']} stays quiet"
        )
    names = {rule["alert"] for rule in alert_rules(alerts)}
    expected = {
        "InferenceNotReady",
        "InferenceServerErrors",
        "InferenceOverloaded",
        "InferenceErrorBudgetBurn",
    }
    expected |= (
        {"InferenceTimeToFirstTokenHigh", "InferenceInterTokenLatencyHigh"}
        if workload == "llm"
        else {"InferenceLatencyHigh"}
    )
    expected |= {"InferenceGpuMemoryNearLimit"} if device == "gpu" else set()
    assert names == expected


# --- a real Prometheus ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited ({process.returncode}) before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready within {timeout_s} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Prometheus:
    """The HTTP API of a running Prometheus; counts what it evaluated."""

    url: str
    evaluated: dict[str, int] = field(default_factory=dict)

    def api(self, path: str, what: str, **params: str) -> Any:
        self.evaluated[what] = self.evaluated.get(what, 0) + 1
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (
            f"{path} {params}: {response.status_code} {body}"
        )
        return body["data"]

    def instant(self, query: str, what: str) -> list[dict[str, Any]]:
        data = self.api("query", what, query=query)
        assert data["resultType"] == "vector", f"{query}: {data['resultType']}, not a vector"
        return data["result"]

    def matrix(self, query: str, what: str, seconds: int = 20) -> list[dict[str, Any]]:
        end = time.time()
        data = self.api(
            "query_range", what, query=query, start=str(end - seconds), end=str(end), step="1"
        )
        assert data["resultType"] == "matrix", f"{query}: {data['resultType']}, not a matrix"
        return data["result"]


@dataclass
class Live:
    """A baked service and the Prometheus that scrapes it."""

    project: Path
    workload: str
    prometheus: Prometheus
    job: str
    instance: str
    pod: str


def service_environment(workload: str, device: str, port: int, fake_nvml: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(ENV)
        and key not in {"CUDA_VISIBLE_DEVICES", "PROMETHEUS_MULTIPROC_DIR"}
    }
    paths = ([str(fake_nvml)] if device == "gpu" else []) + ["src"]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update({f"{ENV}HOST": "127.0.0.1", f"{ENV}PORT": str(port)})
    env.update({ENV + key: value for key, value in OVERLOAD_SETTINGS[workload].items()})
    if device == "gpu":
        env[f"{ENV}DEVICE"] = "cpu"  # the fake NVML reports a GPU; the model runs on the CPU
    return env


def prometheus_config(project: Path, service_port: int, pod: str) -> dict[str, Any]:
    """The generated prometheus.yml, scraping the local service every second."""
    config = yaml.safe_load((project / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [
        str(project / "deploy/prometheus" / name) for name in config["rule_files"]
    ]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [
        {
            "targets": [f"127.0.0.1:{service_port}"],
            "labels": {"namespace": NAMESPACE, "pod": pod},
        }
    ]
    return config


@pytest.fixture
def live(baked, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    workload, device = request.param
    project = baked(workload, device)
    python = sys.executable
    assert_ok(
        run([python, "scripts/make_demo_model.py"], project, PYTHONPATH=str(project / "src")),
        "make_demo_model.py",
    )
    fake_nvml = tmp_path / "fake-nvml"
    fake_nvml.mkdir()
    (fake_nvml / "pynvml.py").write_text(FAKE_NVML)
    port, prometheus_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("service", "prometheus")}
    try:
        service = subprocess.Popen(
            [python, "-m", PACKAGE],
            cwd=project,
            env=service_environment(workload, device, port, fake_nvml),
            stdout=logs["service"],
            stderr=subprocess.STDOUT,
        )
        processes.append(service)
        pod = f"{project.name}-0"
        config = prometheus_config(project, port, pod)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        server = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            stdout=logs["prometheus"],
            stderr=subprocess.STDOUT,
        )
        processes.append(server)
        url = f"http://127.0.0.1:{prometheus_port}"
        wait_for(f"{url}/-/ready", server, "prometheus", 60)
        wait_for(f"http://127.0.0.1:{port}/health/ready", service, "the service", 180)
        yield Live(
            project,
            workload,
            Prometheus(url),
            job=config["scrape_configs"][0]["job_name"],
            instance=f"127.0.0.1:{port}",
            pod=pod,
        )
    except BaseException:
        for name, log in logs.items():
            log.flush()
            print(
                f"--- {name} log\n{(tmp_path / f'{name}.log').read_text(errors='replace')[-4000:]}"
            )
        raise
    finally:
        for process in reversed(processes):
            stop(process)
        for log in logs.values():
            log.close()


def parse_time(value: str) -> float:
    """An RFC 3339 time from the API (nanoseconds and all) as a Unix time."""
    whole, _, fraction = value.rstrip("Z").partition(".")
    zone = ""
    for sign in "+-":
        if sign in fraction:
            fraction, _, offset = fraction.partition(sign)
            zone = sign + offset
    stamp = datetime.fromisoformat(whole + (zone or "+00:00"))
    return stamp.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def wait_until(check: Any, what: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def promql_regex(value: str) -> str:
    """One selected value of a multi-value variable, as Grafana puts it into a =~ matcher."""
    return re.escape(value).replace("\\", "\\\\")  # a backslash in a PromQL string is \\


def wait_for_scrape(prometheus: Prometheus, since: float) -> None:
    """Until every target was scraped successfully after ``since`` (a busy service may time out)."""

    def scraped() -> bool:
        targets = prometheus.api("targets", "waits")["activeTargets"]
        # none yet while Prometheus' first service-discovery update (about 5 s) is pending
        return bool(targets) and all(
            target["health"] == "up" and parse_time(target["lastScrape"]) > since
            for target in targets
        )

    try:
        wait_until(scraped, "a successful scrape", 30)
    except AssertionError:
        print(json.dumps(prometheus.api("targets", "waits")["activeTargets"], indent=1))
        raise


def wait_for_rule_evaluation(prometheus: Prometheus, since: float) -> None:
    """Until every rule group was evaluated after ``since``."""

    def evaluated() -> bool:
        groups = prometheus.api("rules", "waits")["groups"]
        return bool(groups) and all(parse_time(group["lastEvaluation"]) > since for group in groups)

    wait_until(evaluated, "a rule evaluation", 30)


def substitute(query: str, live: Live) -> str:
    """A panel query as Grafana sends it with this job and instance selected."""
    values = {
        "$__rate_interval": RATE_INTERVAL,
        "$__interval": "1s",
        "$job": promql_regex(live.job),
        "$instance": promql_regex(live.instance),
    }
    for variable, value in values.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"a dashboard variable is left: {query}"
    return query


def finite(sample: Any) -> bool:
    return math.isfinite(float(sample[1]))


def check_dashboard(live: Live) -> None:
    board = json.loads((live.project / "deploy/grafana/dashboards/inference.json").read_text())
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        selector, label = match.groups()
        values = live.prometheus.api(
            f"label/{label}/values",
            "dashboard variables",
            **{"match[]": substitute(selector, live)},
        )
        expected = {"job": live.job, "instance": live.instance}[label]
        assert expected in values, f"${variable['name']}: {values}"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        for target in panel["targets"]:
            query = substitute(target["expr"], live)
            legend = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
            where = f"panel {panel['title']!r}: {query}"
            result = live.prometheus.instant(query, "dashboard panel queries")
            assert result, f"{where}: no data"
            gap = KNOWN_EMPTY.get((live.workload, panel["title"]))
            if gap is not None:
                assert not any(finite(series["value"]) for series in result), (
                    f"{where} has data now: remove its KNOWN_EMPTY entry ({gap})"
                )
                print(f"  known gap, no data: {live.workload} panel {panel['title']!r}: {gap}")
                continue
            for series in result:
                assert legend <= series["metric"].keys(), f"{where}: no {legend} in {series}"
            # a series without recent traffic (a route idle for $__rate_interval) may be NaN
            assert any(finite(series["value"]) for series in result), f"{where}: {result}"
            if panel["type"] == "timeseries":
                result = live.prometheus.matrix(query, "dashboard panel range queries")
                assert result, f"{where}: no data over time"
                for series in result:
                    assert legend <= series["metric"].keys(), f"{where}: no {legend} in {series}"
                points = [point for series in result for point in series["values"]]
                assert any(finite(point) for point in points), f"{where}: {result}"


def check_rules(live: Live) -> None:
    alerts = yaml.safe_load((live.project / "deploy/prometheus/alerts.yml").read_text())
    defined = [rule for group in alerts["groups"] for rule in group["rules"]]

    def evaluated() -> list[dict[str, Any]] | None:
        groups = live.prometheus.api("rules", "rule status")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None

    loaded = wait_until(evaluated, "every rule to be evaluated")
    assert len(loaded) == len(defined), "Prometheus loaded other rules than alerts.yml defines"
    for rule in loaded:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    selectors: set[str] = set()
    for rule in defined:
        query = rule["expr"]
        result = live.prometheus.instant(
            query, f"{'recording' if 'record' in rule else 'alert'} rules"
        )
        if "record" in rule:
            assert result, f"{rule['record']}: no data"
            assert all("job" in series["metric"] for series in result), rule["record"]
        elif rule["alert"] == "InferenceNotReady":
            # the service reports ready (a scrape that timed out on this busy machine may
            # still show up as `up` 0: that half is not asserted here)
            not_ready = [series for series in result if "model" in series["metric"]]
            assert not not_ready, f"the service is ready, yet {not_ready}"
        selectors |= {name + (matchers or "") for name, matchers in SELECTOR.findall(query)}
    for selector in sorted(selectors):
        if live.prometheus.instant(selector, "series selectors in rules"):
            continue
        # the traffic has 2xx, 4xx and 503 but no 500 or 504: a selector of those must at least
        # name an exported metric and labels, which it does when it selects data without them
        assert STATUS_MATCHER.search(selector), f"{selector}: no series"
        unfiltered = STATUS_MATCHER.sub("", selector).replace("{, ", "{").replace(", }", "}")
        assert live.prometheus.instant(unfiltered, "series selectors in rules"), (
            f"{selector}: no series, even without its status matchers"
        )
        print(f"  no series of {selector} (no 500 or 504 in the traffic); {unfiltered} has some")
    for record in (rule["record"] for rule in defined if "record" in rule):
        assert live.prometheus.instant(record, "recorded series"), f"{record} was not recorded"


def adapter_rules(readme: str) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    return [
        rule
        for block in blocks
        if "seriesQuery" in block
        for rule in yaml.safe_load(block)["rules"]
    ]


def check_autoscaling(live: Live) -> None:
    k8s = live.project / "deploy/k8s"
    hpa = yaml.safe_load((k8s / "hpa.yaml").read_text())
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    rules = adapter_rules((k8s / "README.md").read_text())
    assert {rule["name"]["as"] for rule in rules} >= wanted, "the HPA reads a metric no rule serves"
    for rule in rules:
        series = live.prometheus.api(
            "series", "adapter series queries", **{"match[]": rule["seriesQuery"]}
        )
        assert series, f"{rule['seriesQuery']}: no series"
        (name,) = {entry["__name__"] for entry in series}
        # what the adapter sends when the HPA asks for the pods of one namespace
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", name)
            .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{live.pod}"')
            .replace("<<.GroupBy>>", "pod")
        )
        result = live.prometheus.instant(query, "adapter metrics queries")
        assert [entry["metric"] for entry in result] == [{"pod": live.pod}], result
        assert float(result[0]["value"][1]) >= 0
    # KEDA: a ScaledObject's Prometheus triggers, where the manifests have one
    for path in sorted(k8s.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "ScaledObject":
                continue
            for trigger in document["spec"]["triggers"]:
                if trigger["type"] == "prometheus":
                    query = trigger["metadata"]["query"]
                    assert live.prometheus.instant(query, "KEDA queries"), f"{query}: no data"


@pytest.mark.slow
@pytest.mark.parametrize("live", LIVE, ids=LIVE_IDS, indirect=True)
def test_prometheus_evaluates_every_dashboard_rule_and_autoscaler_query(live: Live) -> None:
    started = time.perf_counter()
    workload = live.workload
    model = httpx.get(f"http://{live.instance}/openapi.json", timeout=10).json()
    routes = {
        path for path in model["paths"] if path != "/metrics" and not path.startswith("/_bench")
    }
    name = live.project.name  # the served model name defaults to the project slug
    prometheus = live.prometheus
    statuses = traffic(workload, f"http://{live.instance}", name)
    wait_for_scrape(prometheus, since=time.time())  # every series has a sample before round 2
    statuses += traffic(workload, f"http://{live.instance}", name)
    wait_for_scrape(prometheus, since=time.time())
    wait_until(
        lambda: prometheus.instant(
            f'sum(increase(inference_requests_total{{job="{live.job}", status="503"}}[5m])) > 0',
            "waits",
        ),
        "the 503s to show in a rate",
    )
    wait_for_rule_evaluation(prometheus, since=time.time())
    scraped = {
        s["metric"]["route"] for s in prometheus.instant("inference_requests_total", "waits")
    }
    assert routes <= scraped, (
        f"routes without traffic (add them to prometheus_traffic): {routes - scraped}"
    )

    check_dashboard(live)
    check_rules(live)
    check_autoscaling(live)
    counts = {
        what: n for what, n in prometheus.evaluated.items() if what not in {"waits", "rule status"}
    }
    print(
        f"\n{live.project.name} {workload}: {sum(counts.values())} queries evaluated in "
        f"{time.perf_counter() - started:.1f} s "
        f"({', '.join(f'{n} {what}' for what, n in counts.items())}); "
        f"burst statuses {dict(statuses)}"
    )
