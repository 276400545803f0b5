"""The job image's start command, read from the Dockerfile, and the argv ECS runs for a Batch job.

Batch passes a job's `command` (the job definition's, or the submission's override) to ECS as the container's
`Cmd`; Docker then runs the image's ENTRYPOINT with it:
- exec-form ENTRYPOINT (`["aurax"]`): ENTRYPOINT + CMD, the job's command replacing the image's CMD;
- shell-form ENTRYPOINT (`aurax`): `/bin/sh -c "<entrypoint>"`, and CMD (the job's command too) is ignored;
- no ENTRYPOINT: CMD alone (the job's command replacing it).
Sources: https://docs.docker.com/reference/dockerfile/#understand-how-cmd-and-entrypoint-interact and
https://docs.aws.amazon.com/batch/latest/userguide/job_definition_parameters.html#containerProperties
(`command` "maps to Cmd").
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


class ImageError(ValueError):
    """The Dockerfile does not say how its container starts; the message says what to add."""


def _exec_or_shell(instruction: str, value: str) -> tuple[list[str], bool]:
    """An ENTRYPOINT/CMD value as (argv, exec form?)."""
    text = value.strip()
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImageError(f"{instruction} {text} is neither a JSON array (exec form) nor shell form: {exc}") from exc
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ImageError(f"{instruction} {text}: the exec form is a JSON array of strings")
        return argv, True
    return ["/bin/sh", "-c", text], False


@dataclass(frozen=True)
class ContainerImage:
    """How a container of the image starts: the final stage's ENTRYPOINT and CMD."""

    entrypoint: list[str]
    entrypoint_exec_form: bool
    cmd: list[str]

    @classmethod
    def from_dockerfile(cls, path: Path) -> ContainerImage:
        """Parse `path` with dockerfile-parse. Raises ImageError when the final stage sets no ENTRYPOINT (the
        base image's would apply, which cannot be read from here; `ENTRYPOINT []` says there is none)."""
        from dockerfile_parse import DockerfileParser

        try:
            structure = DockerfileParser(path=str(path)).structure
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror}") from exc
        entrypoint: tuple[list[str], bool] | None = None
        cmd: tuple[list[str], bool] | None = None
        for instruction in structure:
            match instruction["instruction"]:
                case "FROM":  # a new stage starts: only the last one is the image
                    entrypoint = cmd = None
                case "ENTRYPOINT":  # resets an inherited CMD, not one set in this stage
                    entrypoint = _exec_or_shell("ENTRYPOINT", instruction["value"])
                case "CMD":
                    cmd = _exec_or_shell("CMD", instruction["value"])
        if entrypoint is None:
            raise ImageError(f"{path} sets no ENTRYPOINT in its final stage, so the base image's applies, which "
                             "aurax local cannot see; set it there (ENTRYPOINT [] for none)")
        return cls(entrypoint[0], entrypoint[1], cmd[0] if cmd else [])

    def argv(self, command: list[str] | None) -> list[str]:
        """What the container runs for a job whose command is `command` (None or empty: the image's CMD)."""
        cmd = list(command) if command else self.cmd
        if not self.entrypoint:
            return cmd
        return [*self.entrypoint, *cmd] if self.entrypoint_exec_form else list(self.entrypoint)


def resolve_program(argv: list[str]) -> list[str]:
    """argv with its program found as the container's PATH would find it, with this interpreter's scripts
    (where the `aurax` console script is) first: the job runs the same entry point as in the image, not a
    stand-in."""
    if not argv or os.sep in argv[0]:
        return list(argv)
    folder = Path(sys.executable).parent
    found = shutil.which(argv[0], path=os.pathsep.join([str(folder), os.environ.get("PATH", "")]))
    if found is None:
        raise ImageError(f"the container's program {argv[0]!r} is not installed here (looked in {folder} and PATH); "
                         "install the project (`make local` creates .venv with the `aurax` script)")
    return [found, *argv[1:]]
