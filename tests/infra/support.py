"""Locating the template, the ASL and the linters that live in their own tool environments."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))


def tool(name: str) -> str:
    """A linter from its own tool environment (.tools/<env>/bin, made by `make tools`), else from PATH."""
    env_dir = {"sam": "sam", "checkov": "checkov"}.get(name)
    candidate = ROOT / ".tools" / env_dir / "bin" / name if env_dir else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which(name, path=os.pathsep.join([str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]))
    if not found:
        pytest.fail(f"{name} is not installed; run `make tools` (CI does) to create .tools/{env_dir or name}")
    return found
