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
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--prompt", " "], "--prompt '': a prompt is empty"),
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--seconds", "0.1"], "needs clips of at least 0.25 s"),
    (["--model", TINY_MODEL_ID, "--prompt", "x", "--device", "cuda"], "--device cuda: torch sees no CUDA device"),
])
def test_bad_arguments_are_refused_before_loading_anything(argv: list[str], message: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
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


def test_an_output_folder_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "clips"
    taken.write_text("not a folder")
    code = main(["generate", "--model", TINY_MODEL_ID, "--prompt", "x", "--out", str(taken)])
    assert code == JobExit.BAD_CONFIG
    assert "is a file, not a folder" in capsys.readouterr().err and taken.read_text() == "not a folder"


def test_a_model_that_cannot_be_loaded_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    code = main(["generate", "--model", str(empty), "--prompt", "x", "--out", str(tmp_path / "out")])
    assert code == JobExit.BAD_INPUT
    err = capsys.readouterr().err
    assert f"cannot load the model '{empty}'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_configured_base_model_loads_as_the_evaluations_control_arm(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "run.json"
    config.write_text(tiny_config().model_copy(update={"model": tiny_config().model.model_copy(
        update={"attention": "eager"})}).model_dump_json())
    seen: list[str] = []

    def capture(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(model.decoder.config._attn_implementation)
        return [], "{}"

    monkeypatch.setattr("aurax.evaluate.folder.generate_to_folder", capture)
    assert main(["generate", "--config", str(config), "--prompt", "x", "--out", str(tmp_path / "out")]) == 0
    assert seen == ["eager"]  # the config's attention kernel, not the default one
