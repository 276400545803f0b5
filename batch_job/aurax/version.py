"""The code version recorded in manifests, reports and decisions (provenance)."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """`AURAX_CODE_VERSION` (set from the git commit when the image is built), else the checkout's commit,
    else the installed package version."""
    if env := os.environ.get("AURAX_CODE_VERSION"):
        return env
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        if sha:
            return f"git-{sha}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return version("aurax-train-control")
    except PackageNotFoundError:
        return "unknown"
