"""The template's version: one value (cookiecutter.json), repeated consistently where it shows."""

from __future__ import annotations

import json
import re
import tomllib

from .combinations import TEMPLATE

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
RELEASE_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?$")


def template_version() -> str:
    return json.loads((TEMPLATE / "cookiecutter.json").read_text())["_template_version"]


def changelog_releases() -> list[tuple[str, str | None]]:
    lines = (TEMPLATE / "CHANGELOG.md").read_text().splitlines()
    found = [RELEASE_HEADING.match(line) for line in lines if line.startswith("## [")]
    assert all(found), "every CHANGELOG release heading is '## [X.Y.Z] - YYYY-MM-DD'"
    return [(m.group("version"), m.group("date")) for m in found if m]


def test_version_is_semantic_and_mirrored_by_the_root_pyproject() -> None:
    version = template_version()
    assert SEMVER.match(version), version
    root = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())
    assert root["project"]["version"] == version


def test_changelog_describes_the_current_release_first() -> None:
    releases = changelog_releases()
    assert releases[0] == ("Unreleased", None)
    version, date = releases[1]
    assert version == template_version() and date, "the newest release is the template's version"
    versions = [tuple(int(n) for n in v.split(".")) for v, _ in releases[1:]]
    assert versions == sorted(versions, reverse=True), "releases are listed newest first"
