"""The hooks: validation rules, refusal messages, and adversarial answers.

Hooks are Jinja templates themselves; ``render_hook`` renders one the way
cookiecutter does, so the unit tests exercise the real file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
from cookiecutter.environment import StrictEnvironment

from .combinations import DEFAULTS, TEMPLATE

BASE_CONTEXT = {
    "project_name": "AI Service",
    "project_slug": "ai-service",
    "package_name": "ai_service",
    "description": "A production-grade AI inference service.",
    "author": "Your Team",
    "python_version": "3.11",
    **DEFAULTS,
}


def render_hook(name: str, **answers: str) -> str:
    context = {"cookiecutter": {**BASE_CONTEXT, **answers}}
    source = (TEMPLATE / "hooks" / name).read_text()
    return StrictEnvironment(context=context).from_string(source).render(**context)


def load_pre_gen(**answers: str) -> types.ModuleType:
    module = types.ModuleType("pre_gen_project")
    exec(
        compile(render_hook("pre_gen_project.py", **answers), "pre_gen_project.py", "exec"),
        module.__dict__,
    )
    return module


def run_pre_gen(tmp_path: Path, **answers: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "pre_gen_project.py"
    script.write_text(render_hook("pre_gen_project.py", **answers))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False
    )


def test_defaults_are_valid(tmp_path: Path) -> None:
    result = run_pre_gen(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_slug": "My Service"}, "project_slug"),
        ({"project_slug": "-service"}, "project_slug"),
        ({"project_slug": "a" * 64}, "project_slug"),
        ({"package_name": "My-Package"}, "package_name"),
        ({"package_name": "1service"}, "package_name"),
        ({"package_name": "class"}, "Python keyword"),
        ({"package_name": "match"}, "Python keyword"),
        ({"package_name": "json"}, "shadow"),
        ({"package_name": "asyncio"}, "shadow"),
        ({"package_name": "fastapi"}, "shadow"),
        ({"package_name": "torch"}, "shadow"),
        ({"python_version": "3.9"}, "python_version"),
        ({"project_name": "   "}, "project_name must not be empty"),
        ({"author": "x" * 201}, "author must be at most"),
    ],
)
def test_refuses_with_one_clear_line(tmp_path: Path, answers: dict[str, str], message: str) -> None:
    result = run_pre_gen(tmp_path, **answers)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ERROR: ") and message in lines[0]


def test_unknown_choice_is_refused(tmp_path: Path) -> None:
    result = run_pre_gen(tmp_path, backend="tensorflow")
    assert result.returncode == 1
    assert "backend 'tensorflow' is not one of" in result.stderr


def test_answers_are_read_as_data() -> None:
    """Quotes, triple quotes, backslashes and code in answers arrive verbatim."""
    hostile = 'x""" + __import__("os").system("echo pwned") + """\\n\\\\ {{ 7*7 }} \'; rm -rf /'
    module = load_pre_gen(description=hostile, author=hostile)
    assert module.ANSWERS["description"] == hostile
    assert module.ANSWERS["author"] == hostile


def test_multiline_answers_are_refused(tmp_path: Path) -> None:
    result = run_pre_gen(tmp_path, description="line one\nline two")
    assert result.returncode == 1
    assert "description must be a single line" in result.stderr


def test_post_gen_variants_and_ownership_are_consistent() -> None:
    """Every variant the post-gen hook may pick exists for every choice in cookiecutter.json."""
    namespace: dict[str, object] = {}
    exec(compile(render_hook("post_gen_project.py"), "post_gen_project.py", "exec"), namespace)
    variants: dict[str, str] = namespace["VARIANTS"]  # type: ignore[assignment]
    owned: dict[str, dict[str, list[str]]] = namespace["OWNED_BY"]  # type: ignore[assignment]
    config = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    root = TEMPLATE / "{{cookiecutter.project_slug}}"
    from .combinations import all_combinations

    for combination in all_combinations():
        for pattern in variants.values():
            assert (root / pattern.format(**combination)).is_file(), pattern.format(**combination)
    for option, by_value in owned.items():
        assert set(by_value) <= set(config[option]), f"OWNED_BY[{option}] names unknown values"


# --- baking adversarial answers ----------------------------------------------------

ADVERSARIAL = [
    "He said \"hi\" and 'bye'",
    "back\\slash \\n \\\\ end\\",
    "Ünïcødé — 服务 🚀",
    "{{ '{{' }} not a template {{ '}}' }} {{ '{%' }} if {{ '%}' }}",
    '$(rm -rf /); `id`; echo "$HOME" && exit 1',
    '""" + __import__("os").system("id") + """',
    "</script><script>alert(1)</script> & <b>",
]


@pytest.mark.parametrize("answer", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_text_bakes_safely(cookies, answer: str) -> None:  # type: ignore[no-untyped-def]
    # cookiecutter renders answers as Jinja first: escaped braces become literal braces
    text = StrictEnvironment().from_string(answer).render()
    context = {"project_name": f"Svc {answer}", "description": answer, "author": answer}
    result = cookies.bake(extra_context=context)
    assert result.exception is None, result.exception
    project = Path(result.project_path)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == text
    assert pyproject["project"]["authors"] == [{"name": text}]
    (package,) = (project / "src").iterdir()
    init = compile((package / "__init__.py").read_text(), "__init__.py", "exec")
    namespace: dict[str, object] = {}
    exec(init, namespace)
    assert namespace["__doc__"] == f"Svc {text}: {text}"
    # every generated Python file still compiles
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    # the app title is the project name, verbatim
    main = (package / "main.py").read_text()
    title_line = next(line for line in main.splitlines() if "title=" in line)
    assert json.loads(title_line.split("title=", 1)[1].rstrip(",")) == f"Svc {text}"


def test_template_markup_in_answers_is_rendered_by_cookiecutter(cookies) -> None:  # type: ignore[no-untyped-def]
    """Cookiecutter renders every answer as Jinja (documented in the README): the result is data."""
    result = cookies.bake(extra_context={"description": "{{ 7 * 6 }} answers"})
    assert result.exception is None
    pyproject = tomllib.loads((Path(result.project_path) / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == "42 answers"


@pytest.mark.parametrize(
    "context",
    [
        {"description": "{% raw %} unterminated"},
        {"project_slug": "Bad Slug"},
        {"package_name": "import"},
        {"description": "two\nlines"},
        {"project_name": "x\x00y"},
    ],
)
def test_adversarial_answers_are_refused(cookies, context: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = cookies.bake(extra_context=context)
    assert result.exit_code != 0
    assert result.project_path is None or not Path(result.project_path).exists()
