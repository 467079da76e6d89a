"""Jinja filters for the template (cookiecutter loads this via ``_extensions``)."""

from __future__ import annotations

import json

from jinja2.ext import Extension


def quoted(value: object) -> str:
    """A double-quoted string literal valid in both Python and TOML, for any answer text.

    ``json.dumps`` escapes quotes, backslashes and control characters with escapes
    both languages share; ``ensure_ascii=False`` keeps non-BMP characters whole
    (JSON's surrogate-pair escapes are invalid in TOML); DEL, which TOML forbids
    raw, is escaped too.
    """
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


class QuotedExtension(Extension):
    def __init__(self, environment):  # type: ignore[no-untyped-def]
        super().__init__(environment)
        environment.filters["quoted"] = quoted
