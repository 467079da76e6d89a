"""The update path: a service made with `cruft create` and edited by its team follows a release.

A temporary git repository holds a copy of this template, tagged with its version (``v0.2.0``,
say). From it ``cruft create`` makes one project per backend (vision + onnxruntime, embeddings
+ torch); each is committed, then edited the way a team edits a service: the model contract in
``model.py``, a settings default, a test of its own, the Kubernetes deployment's memory. The
template then changes template-owned files (Dockerfile, the deployment's liveness probe, a new
file, its version), the model files (which projects skip) and the very settings line the teams
changed, and is released as the next minor (``v0.3.0``); a later, unreleased commit must not
reach the projects.

``cruft check`` fails before the update and passes after; the update applies the release,
keeps every team edit, leaves the one real conflict as conflict markers (cruft's 3-way merge,
``git apply -3``) and says so; once the team resolves it, the project lints and its own tests
pass. One project is updated the way its CI does it (``scripts/template_sync.py update``, which
picks the newest release tag), the other with plain ``cruft update -y``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import BIN, TEMPLATE, assert_ok, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("update")]

SLUG_DIR = "{{cookiecutter.project_slug}}"
# templates/: the Jinja partials the project includes (the Prometheus rule groups)
TEMPLATE_PARTS = ("cookiecutter.json", "hooks", "local_extensions.py", "templates", SLUG_DIR)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
CRUFT = str(BIN / "cruft")

# The settings line both the teams and the template change (non-llm workloads).
TIMEOUT_LINE = '        30.0, gt=0, description="A request not answered within this time gets 504."'
TEAM_TIMEOUT_LINE = TIMEOUT_LINE.replace("30.0", "45.0")
TEMPLATE_TIMEOUT_LINE = TIMEOUT_LINE.replace("gets 504.", "gets a 504.")
RESOLVED_TIMEOUT_LINE = TEMPLATE_TIMEOUT_LINE.replace("30.0", "45.0")
UNRELEASED_NOTE = "# unreleased template change"
SKIPPED_NOTE = "# template change to the model file, which projects skip"


def next_minor(version: str) -> str:
    major, minor, _ = (int(part) for part in version.split("."))
    return f"{major}.{minor + 1}.0"


BASE_VERSION = json.loads((TEMPLATE / "cookiecutter.json").read_text())["_template_version"]
RELEASED_VERSION = next_minor(BASE_VERSION)
BASE_TAG, RELEASE_TAG = f"v{BASE_VERSION}", f"v{RELEASED_VERSION}"
RELEASE_NOTE = f"# template {RELEASE_TAG}: the liveness probe runs every 15 s"


@dataclass(frozen=True)
class Case:
    workload: str
    backend: str
    via: str  # "script": scripts/template_sync.py update (as CI runs it); "cruft": cruft update -y
    # the team's edit of its model contract: (old text, new text) in model.py
    contract: tuple[str, str]
    contract_check: str  # a test line that holds only with the team's contract

    @property
    def slug(self) -> str:
        return f"{self.workload}-service"

    @property
    def package(self) -> str:
        return f"{self.workload}_service"


CASES = [
    Case(
        "vision",
        "onnxruntime",
        "script",
        # another model's input normalisation (CLIP's)
        (
            "mean = (0.485, 0.456, 0.406)",
            "mean = (0.4815, 0.4578, 0.4082)",
        ),
        "assert abs(model.Model.mean[0] - 0.4815) < 1e-6",
    ),
    Case(
        "embeddings",
        "torch",
        "cruft",
        # another model, trained for other shortened ("Matryoshka") sizes
        (
            "    matryoshka_dimensions: tuple[int, ...] = (32, 64)",
            "    matryoshka_dimensions: tuple[int, ...] = (16, 32, 64)",
        ),
        "assert model.Model.matryoshka_dimensions == (16, 32, 64)",
    ),
]


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        repo,
        **GIT_IDENTITY,
    )
    assert_ok(result, f"git {' '.join(args)}")
    return result


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def replace_once(path: Path, old: str, new: str) -> None:
    """Edit a file, failing loudly when the anchor is gone (the template changed under us)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def cruft_env(tmp: Path) -> dict[str, str]:
    """Keep cookiecutter's replay files and clone cache out of the user's home."""
    config = tmp / "cookiecutterrc.yaml"
    if not config.exists():
        config.write_text(
            f"cookiecutters_dir: {tmp / 'cookiecutters'}\nreplay_dir: {tmp / 'replay'}\n"
        )
    return {"COOKIECUTTER_CONFIG": str(config), **GIT_IDENTITY}


def make_template_repo(root: Path) -> Path:
    repo = root / "template"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
    for part in TEMPLATE_PARTS:
        source = TEMPLATE / part
        if source.is_dir():
            shutil.copytree(source, repo / part, ignore=ignore)
        else:
            shutil.copy2(source, repo / part)
    git(repo, "init", "-q")
    commit_all(repo, "template at its base release")
    git(repo, "tag", BASE_TAG)
    return repo


def team_edits(project: Path, case: Case) -> None:
    package = project / "src" / case.package
    replace_once(package / "model.py", *case.contract)
    replace_once(package / "settings.py", TIMEOUT_LINE, TEAM_TIMEOUT_LINE)
    (project / "tests" / "test_team.py").write_text(
        f'"""The team\'s own test: its contract and its settings default."""\n\n'
        f"from {case.package} import model\n"
        f"from {case.package}.settings import Settings\n\n\n"
        f"def test_team_contract() -> None:\n    {case.contract_check}\n\n\n"
        f"def test_team_request_timeout() -> None:\n"
        f"    assert Settings(_env_file=None).request_timeout_s == 45.0\n",
        encoding="utf-8",
    )
    deployment = project / "deploy/k8s/deployment.yaml"
    text = deployment.read_text(encoding="utf-8")
    assert text.count("memory: 2Gi") == 2, "the team's edit expects memory: 2Gi twice"
    deployment.write_text(text.replace("memory: 2Gi", "memory: 3Gi"), encoding="utf-8")


def release_template_change(repo: Path) -> str:
    """The template's next release: returns its commit."""
    slug = repo / SLUG_DIR
    replace_once(
        slug / "src/{{cookiecutter.package_name}}/settings.py", TIMEOUT_LINE, TEMPLATE_TIMEOUT_LINE
    )
    replace_once(slug / "deploy/k8s/deployment.yaml", "periodSeconds: 10", "periodSeconds: 15")
    dockerfile = slug / "Dockerfile"
    dockerfile.write_text(f"{RELEASE_NOTE}\n{dockerfile.read_text()}", encoding="utf-8")
    (slug / "SECURITY.md").write_text(
        "# Security\n\nReport vulnerabilities to {{ cookiecutter.author }}.\n", encoding="utf-8"
    )
    model_variants = sorted(slug.glob("_variants/model/*.py"))
    assert model_variants, "the template's model files moved: update this test"
    for variant in model_variants:
        variant.write_text(f"{variant.read_text()}{SKIPPED_NOTE}\n", encoding="utf-8")
    config = repo / "cookiecutter.json"
    context = json.loads(config.read_text())
    assert "_template_version" in context
    replace_once(
        config,
        f'"_template_version": "{context["_template_version"]}"',
        f'"_template_version": "{RELEASED_VERSION}"',
    )
    commit = commit_all(repo, "release: probe timing, security notes, settings wording")
    git(repo, "tag", RELEASE_TAG)
    # main moves on past the release: projects follow releases, so this must not reach them
    dockerfile.write_text(f"{UNRELEASED_NOTE}\n{dockerfile.read_text()}", encoding="utf-8")
    commit_all(repo, "unreleased work")
    return commit


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The template repo, one committed and team-edited project per case, then a release."""
    root = tmp_path_factory.mktemp("update")
    template = make_template_repo(root)
    env = cruft_env(root)
    projects: dict[str, Path] = {}
    for case in CASES:
        context = {
            "workload": case.workload,
            "backend": case.backend,
            "project_name": f"{case.workload} service",
        }
        result = run(
            [
                CRUFT,
                "create",
                str(template),
                "--no-input",
                "--output-dir",
                str(root / "projects"),
                "--extra-context",
                json.dumps(context),
            ],
            root,
            **env,
        )
        assert_ok(result, f"cruft create {case.workload}")
        project = root / "projects" / case.slug
        assert (project / ".cruft.json").is_file()
        git(project, "init", "-q")
        commit_all(project, "generated with cruft create")
        team_edits(project, case)
        commit_all(project, "the team's edits")
        projects[case.slug] = project
    release = release_template_change(template)
    return {
        "root": root,
        "template": template,
        "release": release,
        "projects": projects,
        "env": env,
    }


def unmerged(project: Path) -> list[str]:
    return git(project, "diff", "--name-only", "--diff-filter=U").stdout.split()


def resolve_timeout_conflict(path: Path) -> None:
    """What the team does: keep its value, take the template's new wording."""
    text = path.read_text(encoding="utf-8")
    block = re.compile(
        r"<<<<<<< ours\n(?P<ours>.*?)=======\n(?P<theirs>.*?)>>>>>>> theirs\n", flags=re.S
    )
    match = block.search(text)
    assert match, text
    assert match.group("ours") == TEAM_TIMEOUT_LINE + "\n"
    assert match.group("theirs") == TEMPLATE_TIMEOUT_LINE + "\n"
    path.write_text(block.sub(RESOLVED_TIMEOUT_LINE + "\n", text, count=1), encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.workload}-{case.backend}")
def test_update_applies_release_and_keeps_team_edits(world, case: Case) -> None:  # type: ignore[no-untyped-def]
    project: Path = world["projects"][case.slug]
    env: dict[str, str] = world["env"]
    package = project / "src" / case.package
    settings = f"src/{case.package}/settings.py"
    sync = [sys.executable, "scripts/template_sync.py"]
    quiet = {**env, "GITHUB_ACTIONS": "false"}

    assert f'TEMPLATE_VERSION = "{BASE_VERSION}"' in (package / "__init__.py").read_text()
    # behind the release: cruft check fails; the CI check warns (exit 0) unless --strict
    assert run([CRUFT, "check", "--checkout", RELEASE_TAG], project, **env).returncode == 1
    warned = run([*sync, "check"], project, **quiet)
    assert (
        warned.returncode == 0
        and f"warning: the template has moved on ({RELEASE_TAG})" in warned.stdout
    )
    assert run([*sync, "check", "--strict"], project, **quiet).returncode == 1

    outputs, body = world["root"] / f"{case.slug}.out", world["root"] / f"{case.slug}.md"
    if case.via == "script":
        updated = run(
            [*sync, "update", "--body", str(body)], project, GITHUB_OUTPUT=str(outputs), **quiet
        )
    else:
        updated = run([CRUFT, "update", "-y", "--checkout", RELEASE_TAG], project, **env)
    assert_ok(updated, "update")
    # cruft reports the conflict (git apply -3's words) and leaves it unmerged, markers in place
    assert f"Applied patch to '{settings}' with conflicts." in updated.stderr, updated.stderr
    assert unmerged(project) == [settings]
    assert not list(project.rglob("*.rej"))
    if case.via == "script":
        assert outputs.read_text() == f"release={RELEASE_TAG}\nconflicts=1\n"
        assert f"- `{settings}`" in body.read_text()
        assert f"warning: conflict to resolve: {settings}" in updated.stdout

    # the release is applied ...
    dockerfile = (project / "Dockerfile").read_text()
    assert dockerfile.startswith(RELEASE_NOTE) and UNRELEASED_NOTE not in dockerfile
    assert (project / "SECURITY.md").read_text().endswith("Report vulnerabilities to Your Team.\n")
    deployment = (project / "deploy/k8s/deployment.yaml").read_text()
    assert "periodSeconds: 15" in deployment
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == world["release"]
    assert state["context"]["cookiecutter"]["_template_version"] == RELEASED_VERSION
    # ... the service's own record of it (/v2 metadata, inference_build_info) moved with it
    init = (package / "__init__.py").read_text()
    assert f'TEMPLATE_VERSION = "{RELEASED_VERSION}"' in init
    # ... and every team edit kept: the skipped model file untouched, the merged deployment
    model_text = (package / "model.py").read_text()
    assert case.contract[1] in model_text and SKIPPED_NOTE not in model_text
    assert deployment.count("memory: 3Gi") == 2 and "memory: 2Gi" not in deployment
    assert "def test_team_request_timeout" in (project / "tests/test_team.py").read_text()

    # up to date now (whatever main does after the release)
    assert_ok(run([CRUFT, "check", "--checkout", RELEASE_TAG], project, **env), "cruft check")
    checked = run([*sync, "check", "--strict"], project, **quiet)
    assert checked.returncode == 0 and "warning" not in checked.stdout

    # the team resolves the conflict and commits; the project lints and its own tests pass
    resolve_timeout_conflict(project / settings)
    commit_all(project, f"template {RELEASE_TAG}")
    assert_ok(run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], project), "ruff")
    assert_ok(
        run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], project),
        "ruff format",
    )
    assert_ok(
        run([sys.executable, "scripts/make_demo_model.py"], project, PYTHONPATH="src"),
        "make_demo_model",
    )
    tests = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "-m",
            "not heavy",
            "-k",
            "health or settings or team",
        ],
        project,
        PYTHONPATH="src",
    )
    assert_ok(tests, "the project's own tests")
    for name in ("test_team_contract", "test_team_request_timeout"):
        assert f"tests/test_team.py::{name} PASSED" in tests.stdout, tests.stdout


def test_link_recipe_tracks_a_plain_cookiecutter_project(world) -> None:  # type: ignore[no-untyped-def]
    """The root README's `cruft link` recipe: link at the release it was made from, then check."""
    root, template, env = world["root"], world["template"], world["env"]
    answers = {"project_name": "linked service", "workload": "vision"}
    baked = run(
        [
            str(BIN / "cookiecutter"),
            "--no-input",
            "--checkout",
            BASE_TAG,
            "--output-dir",
            str(root / "plain"),
            f"git+file://{template}",
            *(f"{key}={value}" for key, value in answers.items()),
        ],
        root,
        **env,
    )
    assert_ok(baked, "cookiecutter")
    project = root / "plain" / "linked-service"
    assert not (project / ".cruft.json").exists()
    sync = [sys.executable, "scripts/template_sync.py", "check"]
    unlinked = run(sync, project, **env, GITHUB_ACTIONS="false")
    assert unlinked.returncode == 0 and "warning: no .cruft.json" in unlinked.stdout
    assert run([*sync, "--strict"], project, **env).returncode == 1
    git(project, "init", "-q")
    commit_all(project, "generated with cookiecutter")
    link = [
        CRUFT,
        "link",
        str(template),
        "--checkout",
        BASE_TAG,
        "--no-input",
        "--extra-context",
        json.dumps(answers),
    ]
    assert_ok(run(link, project, **env), "cruft link")
    # linked at the right commit with the right answers: nothing differs but the team's edits
    assert_ok(run([CRUFT, "diff", "--exit-code"], project, **env), "cruft diff")
    assert run([CRUFT, "check", "--checkout", RELEASE_TAG], project, **env).returncode == 1
