"""`aurax detect` and `aurax score`: formats, rates, channels, JSON lines, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aurax.audio import synth
from aurax.cli import main
from tests.audio.conftest import write_audio

GROOVE_SECONDS = 4.0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(31)
    out = {}
    for name, rate, channels in (("wav", 44100, 2), ("flac", 48000, 1), ("mp3", 44100, 2), ("ogg", 22050, 1)):
        groove = synth.amapiano_groove(rate, GROOVE_SECONDS, rng)
        out[name] = write_audio(folder / f"amapiano.{name}", groove, rate, channels)
    out["house"] = write_audio(folder / "house.wav", synth.house_groove(32000, GROOVE_SECONDS, rng), 32000)
    (folder / "empty.wav").write_bytes(b"")
    out["empty"] = folder / "empty.wav"
    (folder / "junk.mp3").write_bytes(b"this is not audio at all" * 10)
    out["junk"] = folder / "junk.mp3"
    out["short"] = write_audio(folder / "short.wav", synth.silence(16000, 0.05) + 0.1, 16000)
    out["missing"] = folder / "missing.wav"
    return out


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_detect_json_for_every_format_rate_and_channel_count(files: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(files[k]) for k in ("wav", "flac", "mp3", "ogg", "house")]
    assert main(["detect", *paths, "--json"]) == 0
    lines = _lines(capsys)
    assert [line["path"] for line in lines] == paths
    for line in lines[:4]:
        assert set(line) == {"path", "log_drum", "confidence", "events"}
        assert line["log_drum"] is True and 0.0 <= line["confidence"] <= 1.0  # type: ignore[operator]
        for event in line["events"]:  # type: ignore[union-attr]
            assert set(event) == {"time_s", "f0_hz", "decay_ms", "rolloff_db_per_oct"}
            assert 50 <= event["f0_hz"] <= 150
    assert lines[4]["log_drum"] is False and lines[4]["events"] == []


def test_bad_files_are_reported_and_the_others_still_analysed(files: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    order = ["empty", "wav", "junk", "short", "missing", "house"]
    assert main(["detect", *[str(files[k]) for k in order], "--json"]) == 65
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["path"] for line in lines] == [str(files[k]) for k in order]
    errors = {order[i]: line["error"] for i, line in enumerate(lines) if "error" in line}
    assert set(errors) == {"empty", "junk", "short", "missing"}
    assert "empty" in errors["empty"]
    assert "cannot decode" in errors["junk"] and "wav, flac, mp3 or ogg" in errors["junk"]
    assert "at least 0.25 s" in errors["short"]
    assert "No such file" in errors["missing"]
    assert lines[1]["log_drum"] is True and lines[5]["log_drum"] is False
    assert "4 of 6 files could not be analysed" in captured.err


def test_score_json_lines(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(files["wav"]), str(files["house"]), "--json"]) == 0
    amapiano, house = _lines(capsys)
    assert set(amapiano) == {"path", "score", "authentic", "components"}
    components = set(amapiano["components"])  # type: ignore[arg-type]
    assert components == {"log_drum", "tempo", "shakers", "low_end", "keys"}
    assert amapiano["authentic"] is True and house["authentic"] is False
    assert amapiano["score"] > house["score"] + 40  # type: ignore[operator]


def test_score_bad_file_exit_code(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(files["junk"]), str(files["flac"])]) == 65
    out = capsys.readouterr().out
    assert str(files["flac"]) in out and "authentic" in out


def test_readable_output(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", str(files["flac"])]) == 0
    out = capsys.readouterr().out
    assert "log drums (confidence 1.00" in out and "decay" in out and "Hz" in out


def test_thresholds_file(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("detector:\n  f0_max_hz: 55\n")
    assert main(["detect", str(files["flac"]), "--json", "--config", str(strict)]) == 0
    assert _lines(capsys)[0]["log_drum"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  f0_max: 55\n")
    assert main(["detect", str(files["flac"]), "--config", str(bad)]) == 64
    assert "did you mean 'f0_max_hz'" in capsys.readouterr().err
