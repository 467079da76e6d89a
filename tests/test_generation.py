"""Bake every combination of options and check what comes out.

For each combination: the bake succeeds, no template markup is left, exactly the
expected files exist, ruff check and ruff format --check pass, everything
compiles, the dead-code scan (tests/dead_code.py) finds nothing, and the generated
project's own test suite passes (in this
environment, with the project's ``src`` on the path: gpu builds run on the CPU).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from .combinations import DEFAULTS, OPTIONS, all_combinations, combination_id
from .conftest import assert_ok, run
from .dead_code import dead_code
from .expected_files import expected_files

COMBINATIONS = all_combinations()
# The generated suites' `heavy` tests (fuzzing, overload, real-server draining and
# start-up faults) run for one combination per workload and backend: the others
# differ only in options those tests do not exercise.
HEAVY_AXES = ("workload", "backend")


def runs_heavy_tests(combination: dict[str, str]) -> bool:
    return all(combination[key] == DEFAULTS[key] for key in OPTIONS if key not in HEAVY_AXES)


MARKUP = re.compile(r"\{\{|\{%|%\}|\{#|cookiecutter")
# Grafana legends use {{label}} templates of their own.
MARKUP_ALLOWED = re.compile(r"^deploy/grafana/.*\.json$")
# GitHub Actions expressions, ${{ ... }}, in the workflows (written {% raw %} in the template)
ACTIONS_EXPRESSION = re.compile(r"\$\{\{[^{}]*\}\}")
# Prometheus alert annotations are Go templates ({{ $labels.job }}, {{ $value | ... }}).
GO_TEMPLATE_FILES = re.compile(
    r"^deploy/(prometheus/alerts(\.test)?\.yml|k8s/prometheusrule\.yaml)$"
)
GO_TEMPLATE = re.compile(r"\{\{\s*\$[^{}]*\}\}")


def generated_files(project: Path) -> set[str]:
    skip = {"__pycache__", ".pytest_cache", ".ruff_cache"}
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and not skip.intersection(path.relative_to(project).parts)
    }


def leftover_markup(project: Path) -> list[str]:
    found = []
    for name in sorted(generated_files(project)):
        text = (project / name).read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if name.startswith(".github/workflows/"):
                line = ACTIONS_EXPRESSION.sub("", line)
            elif GO_TEMPLATE_FILES.match(name):
                line = GO_TEMPLATE.sub("", line)
            match = MARKUP.search(line)
            if match and not (MARKUP_ALLOWED.match(name) and match.group() == "{{"):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("combination", COMBINATIONS, ids=combination_id)
def test_bakes_cleanly(bake, combination: dict[str, str]) -> None:
    project = bake(**combination)
    assert not leftover_markup(project), "\n".join(leftover_markup(project))
    files = generated_files(project)
    expected = expected_files(combination)
    assert files == expected, (
        f"unexpected: {sorted(files - expected)}; missing: {sorted(expected - files)}"
    )
    assert_ok(
        run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], project), "ruff check"
    )
    assert_ok(
        run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], project),
        "ruff format",
    )
    assert_ok(
        run([sys.executable, "-m", "compileall", "-q", "src", "tests", "scripts"], project),
        "compileall",
    )
    findings = dead_code(project)
    assert not findings, "dead code:\n" + "\n".join(findings)


# Options that only add deployment files: the generated suite of a combination that
# differs from its twin (this option at its default) only in these files would run
# byte-identical code and tests, so the twin's run covers it; the test proves that.
DEPLOYMENT_ONLY: dict[str, tuple[str, ...]] = {
    "kubernetes": (
        "README.md",
        "deploy/README.md",
        "deploy/k8s/",
        "deploy/kserve/",
        "deploy/keda/",
        "deploy/gateway/",
    )
}


def deployment_twin(combination: dict[str, str]) -> dict[str, str] | None:
    option = next(
        (o for o in DEPLOYMENT_ONLY if combination.get(o, DEFAULTS.get(o)) != DEFAULTS.get(o)), None
    )
    return None if option is None else {**combination, option: DEFAULTS[option]}


def differing_files(first: Path, second: Path) -> set[str]:
    files = generated_files(first) | generated_files(second)
    return {
        name
        for name in files
        if not ((first / name).is_file() and (second / name).is_file())
        or (first / name).read_bytes() != (second / name).read_bytes()
    }


@pytest.mark.slow
@pytest.mark.parametrize("combination", COMBINATIONS, ids=combination_id)
def test_generated_suite_passes(bake, combination: dict[str, str]) -> None:
    project = bake(**combination)
    twin = deployment_twin(combination)
    if twin is not None:
        twin_project = bake(**twin)
        allowed = tuple(prefix for option in DEPLOYMENT_ONLY for prefix in DEPLOYMENT_ONLY[option])
        extra = {
            name for name in differing_files(project, twin_project) if not name.startswith(allowed)
        }
        assert not extra, (
            f"differs from {combination_id(twin)} beyond deployment files: {sorted(extra)}"
        )
        return  # the twin's own run of this test executes the identical suite
    selection = [] if runs_heavy_tests(combination) else ["-m", "not heavy"]
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection],
        project,
        PYTHONPATH=str(project / "src"),
    )
    assert_ok(result, "the generated project's tests")
