"""A small Dockerfile reader: instructions, stages, ENV, and .dockerignore matching.

Enough of the Dockerfile reference for the generated Dockerfiles (continuation lines,
comments, flags, exec and shell forms, ENV pairs, $VAR expansion); anything it does not
understand raises instead of being skipped silently.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FLAG = re.compile(r"^--([a-z-]+)(?:=(\S*))?$")
VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form RUN/CMD/ENTRYPOINT/SHELL, else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise ValueError(f"line {self.line}: {self.keyword} is not a JSON array of strings")
        return value


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comments, blank lines and parser directives."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments (and blank lines) may sit inside continuations too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        raise ValueError(f"line {start}: the file ends inside a continuation")
    return lines


def split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        match = FLAG.match(token)
        if not match:
            raise ValueError(f"cannot read the flag {token!r}")
        flags[match.group(1)] = match.group(2) or ""
        rest = rest.lstrip()
    return flags, rest


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise ValueError(f"line {number}: unknown instruction {keyword}")
        flags, args = split_flags(rest.strip())
        instruction = Instruction(keyword, flags, args, number)
        if keyword == "FROM":
            parts = args.split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.append(Stage(len(stages), parts[0], parts[2]))
            elif len(parts) == 1:
                stages.append(Stage(len(stages), parts[0], None))
            else:
                raise ValueError(f"line {number}: cannot read FROM {args!r}")
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ValueError("no FROM instruction")
    return stages


def parse_file(path: Path) -> list[Stage]:
    return parse(path.read_text(encoding="utf-8"))


def expand(value: str, env: Mapping[str, str]) -> str:
    """Docker's $VAR / ${VAR} / ${VAR:-default} substitution (ENV, WORKDIR, COPY...)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name in env and env[name] != "":
            return env[name]
        return match.group("default") or ""

    return VARIABLE.sub(replace, value)


def env_pairs(instruction: Instruction, env: Mapping[str, str]) -> dict[str, str]:
    """The variables one ENV instruction sets (``K=V ...`` or the legacy ``K V``)."""
    tokens = shlex.split(instruction.args, posix=True)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: expand(" ".join(tokens[1:]), env)}
    values: dict[str, str] = {}
    scope = dict(env)
    for token in tokens:
        name, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"line {instruction.line}: cannot read ENV {token!r}")
        values[name] = expand(value, scope)
    return values


def stage_env(stages: list[Stage], stage: Stage) -> dict[str, str]:
    """ENV of a stage, inherited through FROM <stage> (base images' own ENV not included)."""
    by_name = {candidate.name: candidate for candidate in stages if candidate.name}
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    env: dict[str, str] = {}
    for link in reversed(chain):
        for instruction in link.all("ENV"):
            env.update(env_pairs(instruction, env))
    return env


class DockerIgnore:
    """.dockerignore semantics: Go-style globs with **, later lines win, ``!`` re-includes."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:].strip() if include else line
            pattern = pattern.strip("/")
            self.rules.append((include, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out = []
        index = 0
        while index < len(pattern):
            char = pattern[index]
            if pattern.startswith("**/", index):
                out.append("(?:.*/)?")
                index += 3
                continue
            if pattern.startswith("**", index):
                out.append(".*")
                index += 2
                continue
            out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
            index += 1
        # a pattern that names a folder excludes everything below it
        return "^" + "".join(out) + "(?:/.*)?$"

    def excluded(self, relative: str) -> bool:
        verdict = False
        for include, regex in self.rules:
            if regex.match(relative):
                verdict = not include
        return verdict

    @classmethod
    def of(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text(encoding="utf-8") if path.exists() else "")
