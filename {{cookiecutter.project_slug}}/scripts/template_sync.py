"""Keep this service in step with the template it was made from (cruft and `.cruft.json`).

    python scripts/template_sync.py check [--strict]   # is the newest template release applied?
    python scripts/template_sync.py update [--body F]  # apply it (`cruft update`), list conflicts

Both follow the template's releases: its highest ``vMAJOR.MINOR.PATCH`` tag, or its default
branch while it has none. ``check`` warns (exit 0) when the project is behind, so a template
release never turns this project's CI red by itself; ``--strict`` makes it fail instead.
``update`` leaves a conflicting hunk as conflict markers (or a ``.rej`` file when the 3-way
merge is impossible), as cruft does, and lists those files; the README's "Staying up to date"
says how to resolve them. The CI workflows (.github/workflows) run these two commands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

CRUFT_FILE = Path(".cruft.json")
CRUFT = [sys.executable, "-m", "cruft"]  # the cruft of the interpreter running this script
RELEASE_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
NOT_LINKED = "no .cruft.json: link this project once with `cruft link` (the template's README)"


def git_env() -> dict[str, str]:
    """This process's environment; with TEMPLATE_TOKEN set, git (and so cruft) can read a
    private template on GitHub. The token reaches only the git processes started here."""
    env = dict(os.environ)
    token = env.pop("TEMPLATE_TOKEN", "")
    if token:
        index = int(env.get("GIT_CONFIG_COUNT", "0"))
        env[f"GIT_CONFIG_KEY_{index}"] = f"url.https://x-access-token:{token}@github.com/.insteadOf"
        env[f"GIT_CONFIG_VALUE_{index}"] = "https://github.com/"
        env["GIT_CONFIG_COUNT"] = str(index + 1)
    return env


def cruft_state() -> dict[str, Any] | None:
    if not CRUFT_FILE.is_file():
        return None
    return json.loads(CRUFT_FILE.read_text(encoding="utf-8"))


def latest_release(template: str) -> str | None:
    """The template's highest release tag, or None when it has none (follow its branch)."""
    listing = subprocess.run(
        ["git", "ls-remote", "--tags", "--refs", template],
        capture_output=True,
        text=True,
        check=True,
        env=git_env(),
    ).stdout
    releases: dict[tuple[int, ...], str] = {}
    for line in listing.splitlines():
        tag = line.rsplit("refs/tags/", 1)[-1]
        match = RELEASE_TAG.match(tag)
        if match:
            releases[tuple(int(part) for part in match.groups())] = tag
    return releases[max(releases)] if releases else None


def ref_options(ref: str | None) -> list[str]:
    # --not-strict: a project made from a commit newer than the release is not rolled back
    return ["--not-strict", *(["--checkout", ref] if ref else [])]


def annotate(level: str, message: str) -> None:
    """A GitHub Actions annotation when run there, a plain line elsewhere."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::{level} title=Template::{message}")
    else:
        print(f"{level}: {message}")


def check(strict: bool) -> int:
    state = cruft_state()
    if state is None:
        annotate("warning", NOT_LINKED)
        return 1 if strict else 0
    try:
        ref = latest_release(state["template"])
    except subprocess.CalledProcessError as error:
        annotate("warning", f"cannot reach the template {state['template']}: {error.stderr}")
        return 1 if strict else 0
    result = subprocess.run([*CRUFT, "check", *ref_options(ref)], check=False, env=git_env())
    if result.returncode == 0:
        return 0
    target = ref or "its default branch"
    annotate(
        "warning",
        f"the template has moved on ({target}); run `make template-update` or merge the "
        "template-update pull request",
    )
    return 1 if strict else 0


def conflicts() -> list[str]:
    """Files the update could not merge: unmerged paths (3-way) and .rej files (fallback)."""
    unmerged = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=U"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    rejects = [path.as_posix() for path in Path().rglob("*.rej") if ".git" not in path.parts]
    return sorted({*unmerged, *rejects})


def pull_request_body(ref: str | None, conflicted: list[str]) -> str:
    lines = [
        f"Applies the template release **{ref or 'default branch'}** (`cruft update`).",
        "",
        "What changes in this service and what a team must do: the template's CHANGELOG.md.",
    ]
    if conflicted:
        lines += [
            "",
            "**Conflicts to resolve before merging** (conflict markers, or `.rej` hunks to "
            "apply by hand and then delete):",
            "",
            *(f"- `{path}`" for path in conflicted),
        ]
    return "\n".join(lines) + "\n"


def update(body: Path | None) -> int:
    state = cruft_state()
    if state is None:
        print(NOT_LINKED, file=sys.stderr)
        return 1
    ref = latest_release(state["template"])
    result = subprocess.run(
        [*CRUFT, "update", "--skip-apply-ask", *ref_options(ref)], check=False, env=git_env()
    )
    if result.returncode != 0:
        return result.returncode
    conflicted = conflicts()
    for path in conflicted:
        annotate("warning", f"conflict to resolve: {path}")
    if body is not None:
        body.write_text(pull_request_body(ref, conflicted), encoding="utf-8")
    outputs = os.environ.get("GITHUB_OUTPUT")
    if outputs:  # steps.<id>.outputs.release / .conflicts in the workflow
        with open(outputs, "a", encoding="utf-8") as stream:
            stream.write(f"release={ref or 'default-branch'}\nconflicts={len(conflicted)}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="is the newest template release applied?")
    check_parser.add_argument("--strict", action="store_true", help="fail instead of warning")
    update_parser = commands.add_parser("update", help="apply the newest template release")
    update_parser.add_argument("--body", type=Path, help="write a pull-request description here")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.strict)
    return update(args.body)


if __name__ == "__main__":
    sys.exit(main())
