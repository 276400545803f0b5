"""Fixtures: the template and the state machine definitions, parsed once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.infra.support import ASL_FILES, TEMPLATE, CfnLoader


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="session")
def asl_definitions() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in ASL_FILES}


