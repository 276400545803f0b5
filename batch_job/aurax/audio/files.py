"""Running an analysis over many files for `aurax detect` and `aurax score`: one result per file, a bad file
reported on its own line without stopping the others, and exit 65 when any file failed."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

from aurax_contracts import JobExit

from .detector import AudioTooShortError
from .io import Audio, AudioFileError, load_audio

Result = TypeVar("Result")


def analyse_files(paths: Sequence[str], analyse: Callable[[Audio], Result],
                  to_json: Callable[[Result, str], dict[str, object]], describe: Callable[[Result, str], str],
                  as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Analyse each path in order; print a JSON object per line (`as_json`) or a readable block per file.

    A file that cannot be analysed gives `{"path", "error"}` (JSON) and a message on stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    failed = 0
    for path in paths:
        try:
            result = analyse(load_audio(path))
        except (AudioFileError, AudioTooShortError) as exc:
            failed += 1
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            print(f"aurax: {message}", file=err)
            if as_json:
                print(json.dumps({"path": path, "error": message}), file=out, flush=True)
            continue
        print(json.dumps(to_json(result, path)) if as_json else describe(result, path), file=out, flush=True)
    if failed:
        print(f"aurax: {failed} of {len(paths)} file{'s' if len(paths) != 1 else ''} could not be analysed",
              file=err)
        return int(JobExit.BAD_INPUT)
    return int(JobExit.SUCCEEDED)
