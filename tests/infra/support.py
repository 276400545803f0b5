"""Locating the template, the ASL and the linters that live in their own tool environments."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as {"Fn::X": value} mappings."""


def construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", construct_tag)


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
