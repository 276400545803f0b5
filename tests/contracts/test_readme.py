"""The README stays true: its configuration reference, exit codes and quickstart match the code."""

from __future__ import annotations

import re
from pathlib import Path

from aurax.config_reference import BEGIN, END, reference_markdown
from aurax_contracts import JobExit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_configuration_reference_is_generated_from_the_models() -> None:
    start, end = README.index(BEGIN), README.index(END) + len(END)
    assert README[start:end] == reference_markdown(), "run `aurax config reference` and paste it into README.md"


def test_exit_code_table_matches_the_contract() -> None:
    table = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|", README, flags=re.M))
    assert {int(code) for code in table} == {int(code) for code in JobExit}


def test_quickstart_commands_exist() -> None:
    quickstart = README[README.index("## Quickstart"):README.index("## Architecture")]
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", quickstart, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no target {target}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
