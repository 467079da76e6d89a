"""Run a generated Dockerfile's build steps and entrypoint without Docker.

What it proves: the image's dependency install is complete (a fresh virtual environment
gets exactly what the Dockerfile's RUN lines install from the files its COPY lines bring,
through .dockerignore), the model stage builds the model, and the runtime stage's CMD, with
its ENV, WORKDIR and only what it copies from the other stages, serves.

How: every stage runs in Dockerfile order on a directory that stands for the container's
root filesystem, always at the same path, so a virtual environment created in one stage
keeps working in the stages that copy it (as /opt/venv does in the image). Absolute
container paths in RUN, ENV, WORKDIR and COPY are mapped into that directory, except the
host's system folders (/usr, /bin, /tmp...). A finished stage is set aside (renamed); a
stage built ``FROM`` it starts from a hard-linked copy, and ``COPY --from`` reads from it.

Deliberate differences from ``docker build`` (each one printed in the report):
- The base image is emulated: ``python:X.Y...`` becomes this machine's Python X.Y (the
  build is refused when the minor versions differ); ``scratch`` is an empty folder. Other
  base images are refused.
- RUN steps that administer the OS (user and package management) are skipped and listed;
  a RUN that mixes them with other commands is refused.
- Package indexes are this machine's own (pip's configuration, find-links and cache):
  the Dockerfile's PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_NO_CACHE_DIR are left out of
  the RUN environment. The requirements and install commands are the Dockerfile's.
- The process runs as the current user, not the image's USER.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .dockerfile import DockerIgnore, Instruction, Stage, env_pairs, expand, parse_file

# top-level folders that are the host's own: paths under them are not container paths
HOST_DIRS = frozenset(
    {
        "bin",
        "sbin",
        "usr",
        "lib",
        "lib32",
        "lib64",
        "etc",
        "dev",
        "proc",
        "sys",
        "tmp",
        "var",
        "run",
        "root",
    }
)
# commands that administer the OS image; a RUN made only of these is skipped
OS_COMMANDS = frozenset(
    {"groupadd", "useradd", "addgroup", "adduser", "apt-get", "apt", "apk", "dnf", "yum"}
)
# the index and cache settings of pip that stay the machine's own
HOST_PIP_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_CACHE_DIR", "PIP_FIND_LINKS")
CONTAINER_PATH = re.compile(r"(?<![\w./-])/(?!/)([A-Za-z0-9_.@+-]+)")
PYTHON_IMAGE = re.compile(r"^(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)[.\w-]*$")


def first_word(command: str) -> str:
    try:
        return shlex.split(command)[0]
    except (ValueError, IndexError):  # a quote split by the separators: the plain first word
        return command.split()[0]


class DryRunError(RuntimeError):
    """The Dockerfile asks for something this emulation cannot do faithfully."""


@dataclass
class StageState:
    env: dict[str, str]
    workdir: str
    shell: list[str]
    user: str | None = None


@dataclass
class Report:
    steps: list[tuple[str, float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"  {seconds:7.1f} s  {what}" for what, seconds in self.steps]
        lines += [f"  skipped: {what}" for what in self.skipped]
        lines += [f"  note: {what}" for what in self.notes]
        return "\n".join(lines)


class DryRun:
    """Build ``context``'s Dockerfile into ``work``; then ``command()``/``environment()``."""

    def __init__(self, context: Path, work: Path, python: str = sys._base_executable) -> None:  # type: ignore[attr-defined]
        self.context = context
        self.work = work
        self.root = work / "root"
        self.stages_dir = work / "stages"
        self.logs = work / "logs"
        self.shim = work / "base-python"
        self.python = python
        self.report = Report()
        self.ignore = DockerIgnore.of(context)
        self.stages = parse_file(context / "Dockerfile")
        self.final: Stage = self.stages[-1]
        self.final_state: StageState | None = None
        for folder in (self.stages_dir, self.logs, self.shim):
            folder.mkdir(parents=True, exist_ok=True)

    # --- paths -------------------------------------------------------------------------
    def host(self, container_path: str) -> Path:
        """Where a container path lives on this machine."""
        if not container_path.startswith("/"):
            raise DryRunError(f"not an absolute container path: {container_path!r}")
        first = container_path.lstrip("/").split("/", 1)[0]
        if first in HOST_DIRS:
            return Path(container_path)
        return self.root / container_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Map the container paths inside a command line or an ENV value."""

        def replace(match: re.Match[str]) -> str:
            if match.group(1) in HOST_DIRS:
                return match.group(0)
            return f"{self.root}/{match.group(1)}"

        return CONTAINER_PATH.sub(replace, text)

    def rewrite_value(self, value: str) -> str:
        if "://" not in value and ":" in value:  # PATH-like lists
            return ":".join(self.rewrite(part) for part in value.split(":"))
        return self.rewrite(value)

    def _stage_dir(self, stage: Stage) -> Path:
        return self.stages_dir / str(stage.index)

    def _find_stage(self, reference: str, before: int) -> Stage | None:
        for stage in self.stages[:before]:
            if stage.name == reference or str(stage.index) == reference:
                return stage
        return None

    # --- the build -----------------------------------------------------------------------
    def build(self) -> None:
        states: dict[int, StageState] = {}
        for stage in self.stages:
            started = time.perf_counter()
            parent = self._find_stage(stage.base, stage.index)
            if self.root.exists():
                shutil.rmtree(self.root)
            if parent is not None:
                shutil.copytree(
                    self._stage_dir(parent), self.root, symlinks=True, copy_function=os.link
                )
                inherited = states[parent.index]
                state = StageState(
                    dict(inherited.env), inherited.workdir, list(inherited.shell), inherited.user
                )
            else:
                self.root.mkdir(parents=True)
                state = self._base_image(stage.base)
            for instruction in stage.instructions:
                self._execute(stage, instruction, state)
            self.root.rename(self._stage_dir(stage))
            states[stage.index] = state
            self.report.steps.append(
                (
                    f"stage {stage.name or stage.index} (FROM {stage.base})",
                    time.perf_counter() - started,
                )
            )
        # the final stage is the image: put it back in place
        self._stage_dir(self.final).rename(self.root)
        self.final_state = states[self.final.index]

    def _base_image(self, image: str) -> StageState:
        if image == "scratch":  # the empty image: only what the stage copies in
            return StageState(env={}, workdir="/", shell=["/bin/sh", "-c"])
        match = PYTHON_IMAGE.match(image)
        if not match:
            raise DryRunError(f"cannot emulate the base image {image!r} (only python:X.Y...)")
        wanted = (int(match.group(1)), int(match.group(2)))
        have = sys.version_info[:2]
        if wanted != have:
            raise DryRunError(
                f"{image} needs Python %d.%d; this machine runs %d.%d" % (*wanted, *have)
            )
        for name in ("python", "python3", f"python{wanted[0]}.{wanted[1]}"):
            link = self.shim / name
            if not link.exists():
                link.symlink_to(self.python)
        self.report.notes.append(
            f"{image} emulated by {self.python} (Python {sys.version.split()[0]})"
        )
        # the python image's PATH, with its interpreter (here: the shim) first
        return StageState(
            env={
                "PATH": f"{self.shim}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
            },
            workdir="/",
            shell=["/bin/sh", "-c"],
        )

    def _execute(self, stage: Stage, instruction: Instruction, state: StageState) -> None:
        keyword = instruction.keyword
        if keyword == "ENV":
            state.env.update(env_pairs(instruction, state.env))
        elif keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            state.env.setdefault(name.strip(), default.strip())
        elif keyword == "WORKDIR":
            path = expand(instruction.args.strip(), state.env)
            state.workdir = path if path.startswith("/") else f"{state.workdir.rstrip('/')}/{path}"
            self.host(state.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            self._copy(stage, instruction, state)
        elif keyword == "RUN":
            self._run(stage, instruction, state)
        elif keyword == "SHELL":
            shell = instruction.exec_form()
            if not shell:
                raise DryRunError(f"line {instruction.line}: SHELL must be a JSON array")
            state.shell = shell
        elif keyword == "USER":
            state.user = instruction.args.strip()
        elif keyword in {
            "CMD",
            "ENTRYPOINT",
            "HEALTHCHECK",
            "EXPOSE",
            "LABEL",
            "STOPSIGNAL",
            "VOLUME",
        }:
            pass  # metadata: read from the parsed stage when the container starts
        else:
            raise DryRunError(f"line {instruction.line}: cannot emulate {keyword}")

    def _copy(self, stage: Stage, instruction: Instruction, state: StageState) -> None:
        if "from" in instruction.flags:
            source_stage = self._find_stage(instruction.flags["from"], stage.index)
            if source_stage is None:
                raise DryRunError(
                    f"line {instruction.line}: COPY --from={instruction.flags['from']}: "
                    "no earlier stage has that name"
                )
        else:
            source_stage = None
        parts = instruction.exec_form() or shlex.split(instruction.args)
        parts = [expand(part, state.env) for part in parts]
        *sources, destination = parts
        if not sources:
            raise DryRunError(f"line {instruction.line}: COPY needs a source and a destination")
        if not destination.startswith("/"):
            destination = f"{state.workdir.rstrip('/')}/{destination}"
        into_folder = destination.endswith("/") or len(sources) > 1
        for source in sources:
            if any(char in source for char in "*?["):
                raise DryRunError(f"line {instruction.line}: wildcards in COPY are not emulated")
            if source_stage is not None:
                origin = self._stage_dir(source_stage) / source.lstrip("/")
                if not origin.exists():
                    raise DryRunError(
                        f"line {instruction.line}: {source} does not exist in stage "
                        f"{source_stage.name}"
                    )
                self._place(origin, destination, into_folder, link=True)
            else:
                relative = os.path.normpath(source)
                origin = self.context / relative
                if relative in {".", ""}:
                    raise DryRunError(
                        f"line {instruction.line}: COPY of the whole context is not emulated"
                    )
                if not origin.exists() or self.ignore.excluded(Path(relative).as_posix()):
                    raise DryRunError(
                        f"line {instruction.line}: COPY {source}: not in the build context "
                        "(missing, or excluded by .dockerignore)"
                    )
                self._place(
                    origin, destination, into_folder, link=False, prefix=Path(relative).as_posix()
                )

    def _place(
        self, origin: Path, destination: str, into_folder: bool, *, link: bool, prefix: str = ""
    ) -> None:
        target = self.host(destination.rstrip("/") or "/")
        if origin.is_dir():
            # COPY of a folder copies its contents
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(origin.rglob("*")):
                relative = path.relative_to(origin)
                if prefix and self.ignore.excluded(f"{prefix}/{relative.as_posix()}"):
                    continue
                goal = target / relative
                if path.is_dir() and not path.is_symlink():
                    goal.mkdir(parents=True, exist_ok=True)
                    continue
                goal.parent.mkdir(parents=True, exist_ok=True)
                if goal.exists() or goal.is_symlink():
                    goal.unlink()
                if path.is_symlink():
                    goal.symlink_to(os.readlink(path))
                elif link:
                    os.link(path, goal)
                else:
                    shutil.copy2(path, goal)
            return
        if into_folder or target.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            target = target / origin.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)

    def _run(self, stage: Stage, instruction: Instruction, state: StageState) -> None:
        if instruction.exec_form() is not None:
            raise DryRunError(f"line {instruction.line}: exec-form RUN is not emulated")
        if "mount" in instruction.flags:
            raise DryRunError(f"line {instruction.line}: RUN --mount is not emulated")
        command = instruction.args
        words = {first_word(part) for part in re.split(r"&&|\|\||;", command) if part.strip()}
        if words & OS_COMMANDS:
            if not words <= OS_COMMANDS:
                raise DryRunError(
                    f"line {instruction.line}: a RUN mixes OS administration with other steps"
                )
            self.report.skipped.append(
                f"stage {stage.name}, line {instruction.line}: RUN {command[:70]}..."
            )
            return
        env = {name: self.rewrite_value(value) for name, value in state.env.items()}
        for name in HOST_PIP_SETTINGS:
            env.pop(name, None)
            if name in os.environ:
                env[name] = os.environ[name]
        for name, value in os.environ.items():  # pip's other machine settings (certificates...)
            if name.startswith("PIP_") and name not in env and name not in state.env:
                env[name] = value
        env["HOME"] = os.environ.get("HOME", "/root")  # pip's cache
        log = self.logs / f"stage{stage.index}-line{instruction.line}.log"
        started = time.perf_counter()
        with log.open("w") as out:
            result = subprocess.run(
                [*state.shell, self.rewrite(command)],
                cwd=self.host(state.workdir),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
        self.report.steps.append(
            (f"  RUN (line {instruction.line}) {command[:60]}", time.perf_counter() - started)
        )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-4000:]
            raise DryRunError(f"line {instruction.line}: RUN failed ({result.returncode}):\n{tail}")

    # --- the container -------------------------------------------------------------------
    def environment(self, **overrides: str) -> dict[str, str]:
        """The runtime stage's environment (paths mapped), as the container's process sees it."""
        assert self.final_state is not None, "build() first"
        env = {name: self.rewrite_value(value) for name, value in self.final_state.env.items()}
        env["HOME"] = str(self.host("/nonexistent"))  # the image's user has no home
        env.update(overrides)
        return env

    def cwd(self) -> Path:
        assert self.final_state is not None, "build() first"
        return self.host(self.final_state.workdir)

    def command(self, keyword: str = "CMD") -> list[str]:
        """The runtime stage's CMD (or HEALTHCHECK's command) in exec form, paths mapped."""
        if keyword == "HEALTHCHECK":
            instruction = self.final.last("HEALTHCHECK")
            if instruction is None:
                raise DryRunError("the runtime stage has no HEALTHCHECK")
            kind, _, rest = instruction.args.partition(" ")
            if kind.upper() != "CMD":
                raise DryRunError("HEALTHCHECK without CMD")
            argv = Instruction("CMD", {}, rest, instruction.line).exec_form()
        else:
            if self.final.last("ENTRYPOINT") is not None:
                raise DryRunError("ENTRYPOINT is not emulated")
            instruction = self.final.last("CMD")
            if instruction is None:
                raise DryRunError("the runtime stage has no CMD")
            argv = instruction.exec_form()
        if argv is None:
            raise DryRunError(f"{keyword} is not in exec form")
        return [self.rewrite(part) for part in argv]

    def resolve(self, program: str, env: dict[str, str]) -> str:
        found = shutil.which(program, path=env.get("PATH", ""))
        if found is None:
            raise DryRunError(f"{program} is not on the container's PATH {env.get('PATH')}")
        return found
