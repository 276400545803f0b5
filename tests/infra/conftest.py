"""Fixtures: the template and the state machine definitions, parsed once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aurax.local.stack import load_template
from tests.infra.support import ASL_FILES, TEMPLATE


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def asl_definitions() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in ASL_FILES}


