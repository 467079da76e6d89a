"""CI workflows: the template's own matrix, and the one every generated project ships."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .combinations import OPTIONS, TEMPLATE

MAKE_RUN = re.compile(r"^make (?P<target>[\w-]+)(?P<args>.*)$")


def make_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([\w-]+):", makefile.read_text(), flags=re.MULTILINE))


def run_steps(workflow: dict) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
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
    commands = run_steps(workflow)
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
