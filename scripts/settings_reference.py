"""Render docs/reference/settings.md from the ``Settings`` class the template generates.

The settings table cannot drift from the code because it is not written by hand:
this script bakes the template for every combination of the options that
``settings.py`` depends on, imports each baked ``Settings`` class, and renders
one table of the settings every service has plus one section per option value
that adds settings (a workload, a backend, ...). Where a default or description
depends on an option, the cell lists each variant with its condition.

    python scripts/settings_reference.py            # rewrite docs/reference/settings.md
    python scripts/settings_reference.py --check    # exit 1 if the page is out of date

``tests/test_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import re
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
OUTPUT = TEMPLATE / "docs" / "reference" / "settings.md"
SETTINGS_TEMPLATE = "{{cookiecutter.project_slug}}/src/{{cookiecutter.package_name}}/settings.py"
OPTION_REFERENCE = re.compile(r"cookiecutter\.(\w+)")

Combination = dict[str, str]


def template_options() -> dict[str, list[str]]:
    """The choice options of cookiecutter.json, in order, with their values."""
    config = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    return {
        key: value
        for key, value in config.items()
        if isinstance(value, list) and not key.startswith("_")
    }


def relevant_options() -> dict[str, list[str]]:
    """The choice options that ``settings.py`` refers to: only those can change it."""
    source = (TEMPLATE / SETTINGS_TEMPLATE).read_text(encoding="utf-8")
    used = set(OPTION_REFERENCE.findall(source))
    return {key: values for key, values in template_options().items() if key in used}


def combinations(options: dict[str, list[str]]) -> list[Combination]:
    keys = list(options)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*options.values())]


# --- reading a baked Settings class --------------------------------------------


@dataclass(frozen=True)
class FieldDoc:
    """One setting as the reference shows it (hashable: compared across variants)."""

    name: str
    env: str
    type: str
    default: str
    description: str


@dataclass
class Variant:
    combination: Combination
    prefix: str
    fields: dict[str, FieldDoc]


def bake(combination: Combination, output_dir: Path) -> Path | None:
    """Bake one combination; None when the pre-gen hook refuses it (unsupported)."""
    # default_config: ignore the user's ~/.cookiecutterrc and keep replay files out of $HOME
    config = {"replay_dir": str(output_dir / ".replay"), "cookiecutters_dir": str(output_dir)}
    try:
        project = cookiecutter(
            str(TEMPLATE),
            no_input=True,
            output_dir=str(output_dir),
            extra_context=combination,
            default_config=config,  # type: ignore[arg-type]  # a dict is merged with the defaults
        )
    except FailedHookException:
        return None
    return Path(project)


@contextlib.contextmanager
def imported_settings(project: Path) -> Iterator[type]:
    """Import the baked package's ``Settings`` class, then forget the package again."""
    packages = [p for p in (project / "src").iterdir() if (p / "settings.py").is_file()]
    if len(packages) != 1:
        raise RuntimeError(f"expected one package with settings.py under {project / 'src'}")
    package = packages[0].name
    sys.path.insert(0, str(project / "src"))
    try:
        module = importlib.import_module(f"{package}.settings")
        yield module.Settings
    finally:
        sys.path.remove(str(project / "src"))
        for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
            del sys.modules[name]


def describe_type(annotation: Any) -> str:
    """A reader's name for a field type: what to write in the environment variable."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        inner = " or ".join(describe_type(arg) for arg in args)
        return f"{inner}, optional" if len(args) < len(typing.get_args(annotation)) else inner
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        return f"JSON list of {describe_type(item)}"
    names = {bool: "bool", int: "int", float: "float", str: "string", Path: "path"}
    if annotation in names:
        return names[annotation]
    if getattr(annotation, "__name__", "") == "SecretStr":
        return "secret string"
    return getattr(annotation, "__name__", str(annotation))


def describe_constraints(metadata: list[Any]) -> str:
    bounds = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for item in metadata:
        for attribute, symbol in bounds.items():
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def describe_default(field: Any, slug: str) -> str:
    factory = field.default_factory
    value = factory() if factory is not None else field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    if hasattr(value, "get_secret_value"):
        return "*(secret)*"
    if isinstance(value, str) and value == slug:
        return "`<project_slug>`"
    return f"`{value}`"


def cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def read_variant(combination: Combination, project: Path) -> Variant:
    slug = project.name
    with imported_settings(project) as settings_class:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        fields: dict[str, FieldDoc] = {}
        for name, field in settings_class.model_fields.items():
            alias = field.validation_alias if isinstance(field.validation_alias, str) else None
            kind = describe_type(field.annotation)
            if any(getattr(item, "__name__", "") == "NoDecode" for item in field.metadata):
                # the field parses the raw string itself (settings.py says how)
                kind = kind.replace("JSON list", "comma-separated or JSON list")
            constraints = describe_constraints(list(field.metadata))
            fields[name] = FieldDoc(
                name=name,
                env=alias.upper() if alias else f"{prefix}{name.upper()}",
                type=cell(f"{kind} ({constraints})" if constraints else kind),
                default=cell(describe_default(field, slug)),
                description=cell(field.description or ""),
            )
    return Variant(combination, prefix, fields)


def collect_variants() -> tuple[dict[str, list[str]], list[Variant]]:
    options = relevant_options()
    variants = []
    with tempfile.TemporaryDirectory(prefix="settings-reference-") as tmp:
        for index, combination in enumerate(combinations(options)):
            project = bake(combination, Path(tmp) / str(index))
            if project is not None:
                variants.append(read_variant(combination, project))
    if not variants:
        raise RuntimeError("no combination baked")
    return options, variants


# --- describing which variants something holds for -----------------------------


def condition(
    members: list[Combination], universe: list[Combination], options: dict[str, list[str]]
) -> list[dict[str, str]]:
    """The shortest option constraints whose matches are exactly ``members``.

    Returns a list of conjunctions (an OR of ANDs); ``[{}]`` means "always".
    """
    keys = [json.dumps(c, sort_keys=True) for c in members]
    wanted = set(keys)

    def matches(conjunction: dict[str, str]) -> set[str]:
        return {
            json.dumps(c, sort_keys=True)
            for c in universe
            if all(c[k] == v for k, v in conjunction.items())
        }

    pairs = [(key, value) for key, values in options.items() for value in values]
    candidates: list[dict[str, str]] = []
    for size in range(len(options) + 1):
        for chosen in itertools.combinations(pairs, size):
            conjunction = dict(chosen)
            if len(conjunction) != size:  # two values of one option
                continue
            found = matches(conjunction)
            if found == wanted:
                return [conjunction]
            if found and found <= wanted:
                candidates.append(conjunction)
    # no single conjunction: cover greedily with the broadest ones inside the set
    cover: list[dict[str, str]] = []
    left = set(wanted)
    for conjunction in sorted(candidates, key=lambda c: (len(c), -len(matches(c)))):
        gained = matches(conjunction) & left
        if gained and not any(matches(conjunction) <= matches(c) for c in cover):
            cover.append(conjunction)
            left -= gained
        if not left:
            break
    return cover


def format_condition(conjunctions: list[dict[str, str]], options: dict[str, list[str]]) -> str:
    keys = {key for conjunction in conjunctions for key in conjunction}
    if len(conjunctions) > 1 and len(keys) == 1 and all(len(c) == 1 for c in conjunctions):
        # several values of one option: "workload ≠ llm", or "backend = a or b"
        (key,) = keys
        chosen = [c[key] for c in conjunctions]
        others = [value for value in options[key] if value not in chosen]
        if len(others) == 1:
            return f"{key} ≠ {others[0]}"
        return f"{key} = {' or '.join(chosen)}"
    return " or ".join(
        ", ".join(f"{key} = {value}" for key, value in conjunction.items())
        for conjunction in conjunctions
    )


def sort_key(conjunctions: list[dict[str, str]], options: dict[str, list[str]]) -> tuple[Any, ...]:
    order = []
    for conjunction in conjunctions:
        for key, value in conjunction.items():
            order.append((list(options).index(key), options[key].index(value)))
    return (len(conjunctions), sum(len(c) for c in conjunctions), order)


# --- rendering -----------------------------------------------------------------

HEADER = """\
# Settings

<!-- Generated by scripts/settings_reference.py from the Settings class of every
     baked variant. Do not edit by hand: run `python scripts/settings_reference.py`. -->

Every setting of a generated service is an environment variable (or a line in a
`.env` file in the working directory), read once at start-up by
`src/<package>/settings.py` with pydantic-settings. A value that does not parse or
breaks a constraint stops the service at start-up with a message naming the
variable.

The names below use the default package name `ai_service`: the prefix is your
`package_name` upper-cased plus `_` (package `fraud_scorer` reads
`FRAUD_SCORER_MODEL_PATH`). Names are case-insensitive. Booleans accept
`true`/`false`/`1`/`0`; lists are JSON (`["https://app.example"]`), and where
the type says so also comma-separated (`a,b`).

Where a default or a description depends on an option, each variant is given
with its condition in parentheses. This page is generated from the code of
{count} variants (every supported combination of {options});
`tests/test_docs.py` fails when it no longer matches.
"""

TABLE_HEAD = "| variable | type | default | description |\n|---|---|---|---|"


def merged_cell(values: dict[str, list[Combination]], universe, options) -> str:
    """One table cell: the value, or each value followed by the variants it holds for."""
    if len(values) == 1:
        return next(iter(values))
    parts = []
    ordered = sorted(
        values.items(), key=lambda item: sort_key(condition(item[1], universe, options), options)
    )
    for value, members in ordered:
        where = format_condition(condition(members, universe, options), options)
        parts.append(f"{value} ({where})")
    return "<br>".join(parts)


def render(options: dict[str, list[str]], variants: list[Variant]) -> str:
    universe = [v.combination for v in variants]
    # field name -> combinations where it exists; keep the order of first appearance
    order: list[str] = []
    present: dict[str, list[Variant]] = {}
    for variant in variants:
        for name in variant.fields:
            if name not in present:
                order.append(name)
                present[name] = []
            present[name].append(variant)
    # stable order: by position in the variant that has the most fields
    richest = max(variants, key=lambda v: len(v.fields))
    position = {name: i for i, name in enumerate(richest.fields)}
    first = {name: i for i, name in enumerate(order)}
    order.sort(key=lambda name: (position.get(name, len(position)), first[name]))

    sections: dict[str, tuple[list[dict[str, str]], list[str]]] = {}
    for name in order:
        members = [v.combination for v in present[name]]
        conj = condition(members, universe, options)
        title = format_condition(conj, options)
        sections.setdefault(title, (conj, []))[1].append(name)

    def row(name: str) -> str:
        holders = present[name]
        # conditions inside a row are relative to the variants that have the setting
        where = [variant.combination for variant in holders]
        cells = []
        for attribute in ("env", "type", "default", "description"):
            values: dict[str, list[Combination]] = {}
            for variant in holders:
                values.setdefault(getattr(variant.fields[name], attribute), []).append(
                    variant.combination
                )
            cells.append(merged_cell(values, where, options))
        cells[0] = cells[0] if "<br>" in cells[0] else f"`{cells[0]}`"
        return "| " + " | ".join(cells) + " |"

    option_names = ", ".join(f"`{key}`" for key in options) or "no option"
    lines = [HEADER.format(count=len(variants), options=option_names)]
    ordered_sections = sorted(sections.items(), key=lambda item: sort_key(item[1][0], options))
    for title, (conj, names) in ordered_sections:
        if conj == [{}]:
            lines.append("## Every service\n")
        else:
            lines.append(f"## When {title}\n")
        lines.append(TABLE_HEAD)
        lines.extend(row(name) for name in names)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def generate() -> str:
    options, variants = collect_variants()
    return render(options, variants)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python scripts/settings_reference.py")
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
