"""The guide and reference stay complete and in step with the code they describe.

- docs/reference/settings.md is exactly what scripts/settings_reference.py
  renders from the Settings classes of freshly baked projects;
- every guide chapter exists, is in the mkdocs nav, has real content (at least
  MIN_WORDS words outside code blocks) and points at generated code;
- every generated module the docs name (`serving/batcher.py`, `vision/v2.py`, ...)
  exists in the template, so renaming a module without fixing the docs fails;
- the metrics catalogue lists exactly the metrics the template defines.

The strict mkdocs build (`make docs`, part of `make test`) checks links, anchors
and that every page is in the nav.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[1]
DOCS = TEMPLATE / "docs"
PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"
PACKAGE = PROJECT / "src" / "{{cookiecutter.package_name}}"
MIN_WORDS = 1200
CHAPTERS = [
    "index.md",
    "guide/01-models-and-checkpoints.md",
    "guide/02-inference.md",
    "guide/03-inference-lifecycle.md",
    "guide/04-workloads.md",
    "guide/05-deployment-targets.md",
    "guide/06-gpu-fundamentals.md",
    "guide/07-common-pitfalls.md",
]
REFERENCE = [
    "reference/options.md",
    "reference/layout.md",
    "reference/apis.md",
    "reference/settings.md",
    "reference/metrics.md",
    "reference/operations.md",
]
CODE_BLOCK = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
# `serving/batcher.py`, `vision/v2.py`, `main.py`, `scripts/make_demo_model.py`
MODULE_REFERENCE = re.compile(
    r"`((?:serving/|vision/|llm/|embeddings/|tts/|scripts/)?[a-z_]+\.py)`"
)


def load_settings_reference() -> ModuleType:
    path = TEMPLATE / "scripts" / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def prose_words(text: str) -> int:
    return len(CODE_BLOCK.sub("", text).split())


def test_settings_reference_matches_the_code() -> None:
    reference = load_settings_reference()
    expected = reference.generate()
    current = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/reference/settings.md is out of date with the Settings class: "
        "run `python scripts/settings_reference.py` and commit the result"
    )


def test_settings_reference_lists_every_setting_of_the_default_project(tmp_path: Path) -> None:
    """Independent of the renderer's grouping: each env var of a baked project is on the page."""
    reference = load_settings_reference()
    project = reference.bake({}, tmp_path)
    assert project is not None
    variant = reference.read_variant({}, project)
    page = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    missing = [doc.env for doc in variant.fields.values() if f"`{doc.env}`" not in page]
    assert not missing, f"settings missing from docs/reference/settings.md: {missing}"


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((TEMPLATE / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = nav_pages(config["nav"])
    for page in CHAPTERS + REFERENCE:
        assert page in pages, f"{page} is not in the mkdocs.yml nav"
    for page in pages:
        assert (DOCS / page).is_file(), f"the nav names {page}, which does not exist"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_real_content(chapter: str) -> None:
    text = (DOCS / chapter).read_text(encoding="utf-8")
    words = prose_words(text)
    assert words >= MIN_WORDS, f"{chapter} has {words} words of prose, fewer than {MIN_WORDS}"
    assert MODULE_REFERENCE.search(text), f"{chapter} never points at the generated code"


def generated_modules() -> set[str]:
    """Paths a generated project can have, relative to the package and to the project."""
    paths = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    paths |= {
        p.relative_to(PROJECT).as_posix()
        for p in PROJECT.rglob("*.py")
        if "_variants" not in p.parts
    }
    hook = (TEMPLATE / "hooks" / "post_gen_project.py").read_text(encoding="utf-8")
    # VARIANTS destinations: f"{PACKAGE}/model.py": "_variants/..."
    paths |= set(re.findall(r'"(?:\{PACKAGE\}/)?([\w./-]+)":\s*"_variants/', hook))
    # template-level scripts the docs may name
    paths |= {p.relative_to(TEMPLATE).as_posix() for p in (TEMPLATE / "scripts").glob("*.py")}
    return paths


def test_named_modules_exist() -> None:
    known = generated_modules()
    missing = []
    for page in sorted(DOCS.rglob("*.md")):
        for name in MODULE_REFERENCE.findall(page.read_text(encoding="utf-8")):
            if name not in known and not any(k.endswith(f"/{name}") for k in known):
                missing.append(f"{page.relative_to(TEMPLATE)}: {name}")
    assert not missing, "the docs name modules the template lacks:\n" + "\n".join(missing)


def test_metrics_catalogue_matches_the_code() -> None:
    """Every metric the template defines is in the catalogue, and nothing else is."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    defined = {f"inference_{name}" for name in re.findall(r"\{PREFIX\}_(\w+)", source)}
    defined |= set(re.findall(r"[\"'](inference_\w+)[\"']", source))
    assert defined, "found no metric definitions in the template"
    page = (DOCS / "reference" / "metrics.md").read_text(encoding="utf-8")
    documented = {
        re.sub(r"_total$", "", name)  # a Counter named x is exposed as x_total
        for name in re.findall(r"^\| `(inference_\w+)`", page, flags=re.MULTILINE)
    }
    assert documented - defined == set(), f"documented but not defined: {documented - defined}"
    assert defined - documented == set(), f"defined but not documented: {defined - documented}"
