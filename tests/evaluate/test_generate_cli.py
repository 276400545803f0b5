"""`aurax generate`: clips for prompts and seeds into a folder; bad input gets a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile

from aurax.cli import main
from aurax_contracts import TINY_MODEL_ID, JobExit
from tests.evaluate.fixtures import tiny_config


def test_base_model_clips_for_every_prompt_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("deep house with piano\n\n")
    code = main(["generate", "--model", TINY_MODEL_ID, "--prompt", "house, bass, deep", "--prompts-file",
                 str(prompts), "--seeds", "4,9", "--seconds", "1", "--guidance", "2", "--out", str(tmp_path / "out"),
                 "--json"])
    assert code == 0
    index = json.loads(capsys.readouterr().out)
    assert [(c["file"], c["prompt"], c["seed"]) for c in index["clips"]] == [
        ("0000-seed4.wav", "house, bass, deep", 4), ("0001-seed9.wav", "house, bass, deep", 9),
        ("0002-seed4.wav", "deep house with piano", 4), ("0003-seed9.wav", "deep house with piano", 9)]
    assert index["settings"] == {"seconds": 1.0, "guidance_scale": 2.0, "top_k": 250, "temperature": 1.0}
    assert index["model"] == TINY_MODEL_ID and index["precision"] == "fp32"
    for clip in index["clips"]:
        samples, rate = soundfile.read(tmp_path / "out" / clip["file"])
        assert rate == 32000 and samples.shape == (32000,) and clip["finite"] and 0 <= clip["score"] <= 100


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", TINY_MODEL_ID], "no prompts: give --prompt TEXT"),
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--seconds", "0"], "--seconds 0.0: input should be greater than 0"),
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--seconds", "-2"], "--seconds -2.0"),
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--seeds", "1,x"], "--seeds '1,x': give non-negative integers"),
    (["--checkpoint", "/nowhere", "--prompt", "x"], "--checkpoint needs --config"),
])
def test_bad_arguments_are_refused_before_loading_anything(argv: list[str], message: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", *argv, "--out", str(tmp_path / "out")]) == JobExit.BAD_CONFIG
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_checkpoint_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_text(tiny_config().model_dump_json())
    code = main(["generate", "--checkpoint", str(tmp_path / "no-such-run" / "checkpoints"), "--config", str(config),
                 "--prompt", "x", "--out", str(tmp_path / "out")])
    assert code == JobExit.BAD_INPUT
    assert "no verified checkpoint under" in capsys.readouterr().err
