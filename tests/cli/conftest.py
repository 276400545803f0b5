"""The CLI against moto: a stack deployed from this project's template.yaml (executions are created but do
not run: the non-executing Step Functions backend), and helpers to run `aurax` in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto import mock_aws

from aurax.cli import main
from aurax.local.stack import LocalStack, deploy

ROOT = Path(__file__).resolve().parents[2]
STACK = "aurax-cli-test"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def deployed() -> Iterator[LocalStack]:
    # Executions are created but do not run; Batch and Lambda do not need Docker.
    with mock_aws(config={"batch": {"use_docker": False}, "lambda": {"use_docker": False}}):
        yield deploy(ROOT / "template.yaml", STACK)


@pytest.fixture
def aurax(capsys: pytest.CaptureFixture[str]):
    def run(*argv: str) -> CliResult:
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_yaml(tmp_path: Path):
    def write(text: str) -> str:
        path = tmp_path / "run.yaml"
        path.write_text(text)
        return str(path)

    return write
