"""CI workflows: the template's own matrix, and the one every generated project ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from .combinations import OPTIONS, TEMPLATE

MAKE_RUN = re.compile(r"^make (?P<target>[\w-]+)(?P<args>.*)$")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
FIRST_PARTY = ("actions/",)


def dev_pin(name: str) -> str:
    """The template's own pin of a dev tool (root pyproject.toml), e.g. 'cruft==2.16.0'."""
    group = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    (pin,) = [spec for spec in group if spec.split("==")[0] == name]
    return pin


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def make_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([\w-]+):", makefile.read_text(), flags=re.MULTILINE))


def run_steps(workflow: dict, jobs: tuple[str, ...] | None = None) -> list[str]:
    return [
        step["run"]
        for name, job in workflow["jobs"].items()
        if jobs is None or name in jobs
        for step in job["steps"]
        if "run" in step
    ]


def steps_using(workflow: dict) -> list[str]:
    return [
        step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step
    ]


def test_template_workflow_runs_every_workload_and_backend() -> None:
    workflow = yaml.safe_load((TEMPLATE / ".github/workflows/template.yml").read_text())
    matrix = workflow["jobs"]["matrix"]["strategy"]["matrix"]
    assert matrix["workload"] == OPTIONS["workload"]
    assert matrix["backend"] == OPTIONS["backend"]
    targets = make_targets(TEMPLATE / "Makefile")
    for command in run_steps(workflow):
        match = MAKE_RUN.match(command)
        assert match and match.group("target") in targets, command


@pytest.mark.parametrize("backend", OPTIONS["backend"])
def test_generated_workflow_runs_the_makefile_targets(bake, backend: str) -> None:  # type: ignore[no-untyped-def]
    project = bake(backend=backend)
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    targets = make_targets(project / "Makefile")
    commands = run_steps(workflow, jobs=("test", "image"))
    assert [MAKE_RUN.match(c).group("target") for c in commands] == [  # type: ignore[union-attr]
        "install",
        "lint",
        "hadolint",
        "model",
        "test",
        "image",
    ]
    assert all(MAKE_RUN.match(c).group("target") in targets for c in commands)  # type: ignore[union-attr]
    torch_index = workflow["jobs"]["test"].get("env", {}).get("PIP_EXTRA_INDEX_URL", "")
    assert ("whl/cpu" in torch_index) == (backend == "torch")


def test_generated_ci_checks_the_template_version_without_failing(bake) -> None:  # type: ignore[no-untyped-def]
    project = bake()
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert run_steps(workflow, jobs=("template",)) == [
        f"python -m pip install {dev_pin('cruft')}",
        # no --strict: behind the template is a warning (README, "Staying up to date")
        "python scripts/template_sync.py check",
    ]
    assert (project / "scripts/template_sync.py").is_file()


def test_generated_template_update_workflow_opens_a_pull_request(bake) -> None:  # type: ignore[no-untyped-def]
    project = bake()
    workflow = yaml.safe_load((project / ".github/workflows/template-update.yml").read_text())
    on = triggers(workflow)
    assert set(on) == {"schedule", "workflow_dispatch"} and on["schedule"][0]["cron"]
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}
    (job,) = workflow["jobs"].values()
    checkout = next(
        step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout")
    )
    assert checkout["with"]["fetch-depth"] == 0  # the 3-way merge needs earlier template output
    sync = next(step for step in job["steps"] if step.get("id") == "sync")
    assert (
        sync["run"]
        == 'python scripts/template_sync.py update --body "$RUNNER_TEMP/template-update.md"'
    )
    assert f"python -m pip install {dev_pin('cruft')}" in run_steps(workflow)
    pull_request = job["steps"][-1]
    assert pull_request["uses"].partition("@")[0] == "peter-evans/create-pull-request"
    assert pull_request["with"]["body-path"] == "${{ runner.temp }}/template-update.md"
    assert "steps.sync.outputs.conflicts" in pull_request["with"]["draft"]
    # a third-party action that gets a write token is pinned to a commit, not a movable tag
    for uses in steps_using(workflow):
        if not uses.startswith(FIRST_PARTY):
            assert FULL_SHA.match(uses.partition("@")[2]), uses
