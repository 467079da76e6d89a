"""The option matrix, computed from cookiecutter.json so new choices join automatically."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
CONFIG = json.loads((TEMPLATE / "cookiecutter.json").read_text())
OPTIONS: dict[str, list[str]] = {
    key: value
    for key, value in CONFIG.items()
    if isinstance(value, list) and not key.startswith("_")
}
DEFAULTS: dict[str, str] = {key: values[0] for key, values in OPTIONS.items()}


def all_combinations() -> list[dict[str, str]]:
    keys = list(OPTIONS)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*OPTIONS.values())]


def combination_id(combination: dict[str, str]) -> str:
    return "-".join(combination[key] for key in OPTIONS)
