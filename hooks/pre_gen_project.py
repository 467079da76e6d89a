"""Validate the answers before anything is generated.

Answers are read as data: each value is rendered by Jinja as a JSON literal
(``| tojson``) and parsed with ``json.loads``, so quotes, backslashes, newlines
or code in an answer can never change this script (a JSON text never holds three
unescaped quotes in a row, so it cannot end the raw string). Every refusal is one line
on stderr and exit status 1; cookiecutter then removes the partial output.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

ANSWERS: dict[str, str] = json.loads(
    r"""{{ {
        "project_name": cookiecutter.project_name,
        "project_slug": cookiecutter.project_slug,
        "package_name": cookiecutter.package_name,
        "description": cookiecutter.description,
        "author": cookiecutter.author,
        "python_version": cookiecutter.python_version,
        "workload": cookiecutter.workload,
        "backend": cookiecutter.backend,
        "device": cookiecutter.device,
        "batching": cookiecutter.batching,
        "monitoring": cookiecutter.monitoring,
        "kubernetes": cookiecutter.kubernetes,
    } | tojson }}"""
)

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SUPPORTED_PYTHON = ("3.11", "3.12")
CHOICES = {
    "workload": ("vision", "llm", "embeddings", "tts"),
    "backend": ("onnxruntime", "torch"),
    "device": ("cpu", "gpu"),
    "batching": ("dynamic", "none"),
    "monitoring": ("prometheus", "none"),
    "kubernetes": ("yes", "no"),
}
# Combinations that cannot work, with the reason shown to the user.
UNSUPPORTED: list[tuple[dict[str, str], str]] = []
# Package names that would shadow a module the service itself imports.
RESERVED_PACKAGES = {
    "app", "api", "test", "tests", "src", "scripts", "fastapi", "starlette", "uvicorn",
    "pydantic", "pydantic_settings", "numpy", "onnx", "onnxruntime", "torch", "safetensors",
    "prometheus_client", "PIL", "httpx", "multipart", "orjson", "anyio", "openai", "transformers",
    "tokenizers",
}  # fmt: skip
SINGLE_LINE_FIELDS = ("project_name", "description", "author")
MAX_TEXT_LENGTH = 200


def validate(answers: dict[str, str]) -> list[str]:
    """Return one message per problem; an empty list means the answers are usable."""
    errors: list[str] = []
    slug = answers["project_slug"]
    if not SLUG_RE.match(slug) or len(slug) > 63:
        errors.append(
            f"project_slug {slug!r} must be lowercase letters, digits and single dashes, "
            "start with a letter and be at most 63 characters (it names a directory, "
            "a container and Kubernetes objects)"
        )
    package = answers["package_name"]
    if not PACKAGE_RE.match(package) or not package.isidentifier():
        errors.append(
            f"package_name {package!r} must be a lowercase Python identifier "
            "(letters, digits, underscores; starting with a letter)"
        )
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        errors.append(f"package_name {package!r} is a Python keyword")
    elif package in sys.stdlib_module_names or package in RESERVED_PACKAGES:
        errors.append(
            f"package_name {package!r} would shadow the module of the same name "
            "that the service imports; choose another name"
        )
    for field in SINGLE_LINE_FIELDS:
        value = answers[field]
        if not value.strip():
            errors.append(f"{field} must not be empty")
        elif any(ch in value for ch in "\r\n\x00"):
            errors.append(f"{field} must be a single line")
        elif len(value) > MAX_TEXT_LENGTH:
            errors.append(f"{field} must be at most {MAX_TEXT_LENGTH} characters")
    if answers["python_version"] not in SUPPORTED_PYTHON:
        errors.append(
            f"python_version {answers['python_version']!r} is not supported; "
            f"choose one of {', '.join(SUPPORTED_PYTHON)}"
        )
    for option, choices in CHOICES.items():
        if answers[option] not in choices:
            errors.append(f"{option} {answers[option]!r} is not one of {', '.join(choices)}")
    for combination, reason in UNSUPPORTED:
        if all(answers.get(key) == value for key, value in combination.items()):
            errors.append(reason)
    return errors


def main() -> int:
    errors = validate(ANSWERS)
    for message in errors:
        print(f"ERROR: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
