"""`aurax job prepare` end to end on a local folder: selection, split, manifest, report, shards round-trip
through `load_split`; bad inputs give a clear exit code and leave nothing that looks like a dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aurax.cli import main
from aurax.dataset.builder import prepare_dataset
from aurax.dataset.shards import load_manifest, load_split
from aurax.errors import InputError
from aurax_contracts import JobExit
from tests.dataset.mtat_fixture import (
    BROKEN_PATH,
    ELIGIBLE_TRAIN,
    ELIGIBLE_VALIDATION,
    FIXTURE_CLIPS,
    mp3_bytes,
    run_config,
    write_config,
)


def _prepare(tmp_path: Path, source: Path, name: str = "config.json", **rules: object) -> tuple[int, Path]:
    config = write_config(tmp_path / name, run_config(**rules))
    dataset = tmp_path / "datasets" / "ds"
    code = main(["job", "prepare", "--config", config, "--dataset-uri", str(dataset), "--source", str(source),
                 "--work-dir", str(tmp_path / "work")])
    return code, dataset


def _encode_directly(clip_id: int) -> np.ndarray:
    """What the codec gives for one fixture clip, decoded and resampled independently of the job."""
    import io

    import soundfile
    import soxr
    import torch

    import aurax.model

    audio, rate = soundfile.read(io.BytesIO(mp3_bytes(clip_id)), dtype="float32")
    model = aurax.model.load_musicgen(run_config().model.model_id)
    waveform = torch.from_numpy(soxr.resample(audio, rate, 32000, quality="HQ")).unsqueeze(0)
    return aurax.model.encode_audio(model, waveform)[0].numpy().astype(np.int16)


def _damaged_copy(source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    return copy


def _path_of(clip_id: int) -> str:
    return next(path for cid, path, _ in FIXTURE_CLIPS if cid == clip_id)


def test_local_folder_builds_a_dataset_the_training_reads(tmp_path: Path, extracted_source: Path) -> None:
    code, dataset = _prepare(tmp_path, extracted_source)
    assert code == JobExit.SUCCEEDED
    manifest, _ = load_manifest(str(dataset))
    config = run_config()
    assert manifest.fingerprint == config.dataset_fingerprint()
    assert manifest.codec_model_id == config.model.model_id
    assert (manifest.sample_rate, manifest.frame_rate, manifest.num_codebooks, manifest.codebook_size) == \
        (32000, 50.0, 4, 64)
    assert manifest.counts == {"train": len(ELIGIBLE_TRAIN), "validation": len(ELIGIBLE_VALIDATION)}
    assert manifest.skipped == {"corrupt": 0, "too-short": 0, "missing": 0, "known-broken": 1}
    assert manifest.total_seconds == pytest.approx(2.5 * 11, abs=0.5)

    train, _ = load_split(str(dataset), "train", cache_dir=tmp_path / "cache")
    validation, _ = load_split(str(dataset), "validation")
    assert sorted(c.clip_id for c in train) == sorted(ELIGIBLE_TRAIN)
    assert sorted(c.clip_id for c in validation) == sorted(ELIGIBLE_VALIDATION)
    for clip in train + validation:
        assert clip.codes.dtype == np.int16 and clip.codes.shape == (4, 125)  # 2.5 s at 50 frames/s
        assert 0 <= clip.codes.min() and clip.codes.max() < 64
    prompts = {c.clip_id: c.prompt for c in train + validation}
    assert prompts[29] == "house, bass, deep" and prompts[2] == "house, percussion, electronic, fast"
    assert len({c.codes.tobytes() for c in train}) == len(train)  # distinct audio, distinct codes
    assert np.array_equal(next(c for c in train if c.clip_id == 13).codes, _encode_directly(13))

    report = json.loads((dataset / manifest.selection_report).read_text())
    kept = {k["clip_id"]: k for k in report["kept"]}
    assert kept[7]["matched_tags"] == ["bass", "deep", "piano"] and kept[7]["score"] == 5.5
    assert kept[29]["split"] == "validation" and kept[2]["split"] == "train"
    assert report["tag_histogram_selected"]["house"] == 2 and report["tag_histogram_selected"]["piano"] == 2
    assert report["not_eligible"] == {"below-min-score": 1, "excluded-tag": 1, "excluded-folder": 1,
                                      "known-broken": 1}
    assert report["skipped"] == [{"clip_id": 53, "mp3_path": BROKEN_PATH, "cause": "known-broken",
                                  "detail": "listed as broken in MagnaTagATune"}]
    names = sorted(p.name for p in dataset.iterdir())
    assert names == ["manifest.json", "selection-report.json", "train-00000.npz", "validation-00000.npz"]


def test_same_config_gives_the_same_bytes_and_zip_parts_match_folders(
        tmp_path: Path, extracted_source: Path, zipped_source: Path) -> None:
    config = run_config(target_clips=5)
    first = prepare_dataset(config, str(tmp_path / "a"), tmp_path / "work", str(extracted_source))
    second = prepare_dataset(config, str(tmp_path / "b"), tmp_path / "work", str(zipped_source))
    assert [(s.name, s.sha256) for s in first.shards] == [(s.name, s.sha256) for s in second.shards]
    assert first.counts == {"train": 4, "validation": 1}  # the 5 best: 29 (7.0), 2, 11, 7, 13 (5.0)
    assert sorted(c.clip_id for c in load_split(str(tmp_path / "b"), "train")[0]) == [2, 7, 11, 13]


def test_several_shards_per_split(tmp_path: Path, extracted_source: Path) -> None:
    from aurax.dataset.builder import PrepareOptions

    manifest = prepare_dataset(run_config(), str(tmp_path / "ds"), tmp_path / "work", str(extracted_source),
                               PrepareOptions(shard_clips=3, batch_size=2, decode_workers=2))
    assert sorted(s.name for s in manifest.shards) == ["train-00000.npz", "train-00001.npz", "train-00002.npz",
                                                       "validation-00000.npz"]
    assert [s.clips for s in manifest.shards if s.split == "train"] == [3, 3, 2]
    assert len(load_split(str(tmp_path / "ds"), "train")[0]) == 8


def test_complete_dataset_is_left_alone(tmp_path: Path, extracted_source: Path) -> None:
    code, dataset = _prepare(tmp_path, extracted_source)
    before = {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()}
    code, _ = _prepare(tmp_path, tmp_path / "no-such-source")  # never touched: the manifest says complete
    assert code == JobExit.SUCCEEDED
    assert {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()} == before


def test_dataset_with_a_lost_shard_is_rebuilt(tmp_path: Path, extracted_source: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, target_clips=5)
    (dataset / "validation-00000.npz").unlink()
    with pytest.raises(InputError, match="cannot be read .*re-run `aurax job prepare"):
        load_split(str(dataset), "validation")
    code, _ = _prepare(tmp_path, extracted_source, target_clips=5)
    assert code == JobExit.SUCCEEDED
    assert len(load_split(str(dataset), "validation")[0]) == 1


def test_partial_output_of_a_failed_run_is_replaced(tmp_path: Path, extracted_source: Path) -> None:
    dataset = tmp_path / "datasets" / "ds"
    dataset.mkdir(parents=True)
    (dataset / "train-00000.npz").write_bytes(b"half written")
    (dataset / "train-00007.npz").write_bytes(b"from a bigger run")
    (dataset / "manifest.json").write_text("{not json")
    (dataset / "notes.txt").write_text("not ours: kept")
    (dataset / "old").mkdir()
    (dataset / "old" / "train-00000.npz").write_text("not ours either: kept")
    code, _ = _prepare(tmp_path, extracted_source)
    assert code == JobExit.SUCCEEDED
    assert not (dataset / "train-00007.npz").exists() and (dataset / "notes.txt").read_text() == "not ours: kept"
    assert (dataset / "old" / "train-00000.npz").is_file()
    assert len(load_split(str(dataset), "train")[0]) == 8


def test_corrupt_short_and_missing_mp3s_are_skipped_and_counted(tmp_path: Path, extracted_source: Path) -> None:
    source = _damaged_copy(extracted_source, tmp_path)
    (source / _path_of(2)).write_bytes(b"ID3" + b"\x00garbage" * 200)
    (source / _path_of(11)).write_bytes(mp3_bytes(11, seconds=0.5))
    (source / _path_of(7)).unlink()
    code, dataset = _prepare(tmp_path, source, target_tolerance=0.3)
    assert code == JobExit.SUCCEEDED
    manifest, _ = load_manifest(str(dataset))
    assert manifest.skipped == {"corrupt": 1, "too-short": 1, "missing": 1, "known-broken": 1}
    assert manifest.counts == {"train": 5, "validation": 3}
    report = json.loads((dataset / "selection-report.json").read_text())
    causes = {s["clip_id"]: s["cause"] for s in report["skipped"]}
    assert causes == {2: "corrupt", 11: "too-short", 7: "missing", 53: "known-broken"}


def test_skipped_clips_are_replaced_by_the_next_best(tmp_path: Path, extracted_source: Path) -> None:
    source = _damaged_copy(extracted_source, tmp_path)
    (source / _path_of(2)).write_bytes(b"not an mp3")
    code, dataset = _prepare(tmp_path, source, target_clips=6)
    assert code == JobExit.SUCCEEDED
    manifest, _ = load_manifest(str(dataset))
    assert sum(manifest.counts.values()) == 6 and manifest.skipped["corrupt"] == 1


def _assert_nothing_written(dataset: Path) -> None:
    assert not dataset.exists() or list(dataset.iterdir()) == []


def test_zero_clips_selected_exits_64_names_a_fix_and_writes_nothing(
        tmp_path: Path, extracted_source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, min_score=1000)
    assert code == JobExit.BAD_CONFIG  # the config asks for what the annotations cannot give
    err = capsys.readouterr().err
    assert "0 eligible clips, fewer than the 11 needed (dataset.target_clips 11 less" in err
    assert "fix: set dataset.min_score: 3.5 (11 clips selected: train 8, validation 3)" in err
    _assert_nothing_written(dataset)
    report = json.loads(next((tmp_path / "work").rglob("selection-report.json")).read_text())
    assert report["eligible_clips"] == 0 and report["plan"]["met"] is False


def test_target_out_of_reach_exits_64_before_downloading(tmp_path: Path, zipped_source: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, zipped_source, target_clips=50, target_tolerance=0.05)
    assert code == JobExit.BAD_CONFIG
    err = capsys.readouterr().err
    assert "11 eligible clips, fewer than the 48 needed" in err and "fix: set dataset.target_clips: 11" in err
    _assert_nothing_written(dataset)
    assert not list((tmp_path / "work").rglob("mp3.zip.*"))  # no audio was copied


def test_all_eligible_below_its_floor_exits_64(tmp_path: Path, extracted_source: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, target_clips="all", min_clips=12)
    assert code == JobExit.BAD_CONFIG
    err = capsys.readouterr().err
    assert 'fewer than the 12 needed (dataset.target_clips "all" with dataset.min_clips 12)' in err
    assert "fix: set dataset.min_clips: 11" in err
    _assert_nothing_written(dataset)


def test_all_eligible_takes_every_eligible_clip(tmp_path: Path, extracted_source: Path) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, target_clips="all", min_clips=5)
    assert code == JobExit.SUCCEEDED
    manifest, _ = load_manifest(str(dataset))
    assert manifest.counts == {"train": len(ELIGIBLE_TRAIN), "validation": len(ELIGIBLE_VALIDATION)}


def test_too_many_bad_files_exit_65_and_remove_written_shards(tmp_path: Path, extracted_source: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = _damaged_copy(extracted_source, tmp_path)
    for clip_id in ELIGIBLE_TRAIN[:4]:
        (source / _path_of(clip_id)).write_bytes(b"corrupt")
    code, dataset = _prepare(tmp_path, source, target_tolerance=0.2)
    assert code == JobExit.BAD_INPUT
    err = capsys.readouterr().err
    assert "only 7 usable clips, fewer than the 9 needed" in err and "'corrupt': 4" in err
    _assert_nothing_written(dataset)


def test_no_validation_clip_exits_64_before_downloading(tmp_path: Path, extracted_source: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, validation_folders=["9"], target_clips=8)
    assert code == JobExit.BAD_CONFIG
    err = capsys.readouterr().err
    assert "no validation clip is selected from validation_folders ['9']" in err
    _assert_nothing_written(dataset)


def test_no_usable_validation_clip_exits_65(tmp_path: Path, extracted_source: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _damaged_copy(extracted_source, tmp_path)
    for clip_id in ELIGIBLE_VALIDATION:
        (source / _path_of(clip_id)).write_bytes(b"corrupt")
    code, dataset = _prepare(tmp_path, source, target_clips=8, target_tolerance=0.0)
    assert code == JobExit.BAD_INPUT
    assert "no validation clip was usable" in capsys.readouterr().err
    _assert_nothing_written(dataset)


def test_unknown_tag_exits_64_with_close_matches(tmp_path: Path, extracted_source: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, dataset = _prepare(tmp_path, extracted_source, include_tags={"hose": 3.0, "techno": 1.0})
    assert code == JobExit.BAD_CONFIG
    assert "'hose' is not a MagnaTagATune tag; fix: did you mean 'house'" in capsys.readouterr().err
    _assert_nothing_written(dataset)


def test_bad_config_exits_64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("run_id: ok-run\ndataset: {target_clip: 5}\n")
    code = main(["job", "prepare", "--config", str(tmp_path / "bad.yaml"), "--dataset-uri", str(tmp_path / "ds")])
    assert code == JobExit.BAD_CONFIG and "did you mean 'target_clips'" in capsys.readouterr().err


def test_malformed_annotations_exit_65(tmp_path: Path, extracted_source: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = _damaged_copy(extracted_source, tmp_path)
    lines = (source / "annotations_final.csv").read_bytes().split(b"\r\n")
    lines[3] = lines[3].rsplit(b"\t", 1)[0]  # a row cut short
    (source / "annotations_final.csv").write_bytes(b"\r\n".join(lines))
    code, dataset = _prepare(tmp_path, source)
    assert code == JobExit.BAD_INPUT
    assert "line 4: expected 190 tab-separated fields" in capsys.readouterr().err
    _assert_nothing_written(dataset)


def test_truncated_zip_part_exits_65(tmp_path: Path, zipped_source: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = _damaged_copy(zipped_source, tmp_path)
    last = source / "mp3.zip.003"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # an interrupted copy
    code, dataset = _prepare(tmp_path, source)
    assert code == JobExit.BAD_INPUT
    assert "do not form a valid zip" in capsys.readouterr().err
    _assert_nothing_written(dataset)


def test_missing_zip_part_exits_65(tmp_path: Path, zipped_source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _damaged_copy(zipped_source, tmp_path)
    (source / "mp3.zip.002").unlink()
    code, dataset = _prepare(tmp_path, source)
    assert code == JobExit.BAD_INPUT
    assert "but not mp3.zip.002" in capsys.readouterr().err
    _assert_nothing_written(dataset)


def test_corrupt_member_in_zip_is_skipped_as_corrupt(tmp_path: Path, zipped_source: Path) -> None:
    source = _damaged_copy(zipped_source, tmp_path)
    first = source / "mp3.zip.001"
    data = bytearray(first.read_bytes())
    data[200:260] = bytes(60)  # inside the first member's compressed data: its CRC-32 no longer matches
    first.write_bytes(bytes(data))
    code, dataset = _prepare(tmp_path, source, target_tolerance=0.2)
    assert code == JobExit.SUCCEEDED
    manifest, _ = load_manifest(str(dataset))
    assert manifest.skipped["corrupt"] == 1
    digest = hashlib.sha256((dataset / manifest.shards[0].name).read_bytes()).hexdigest()
    assert digest == manifest.shards[0].sha256
