"""`aurax job prepare` as PID 1 of its container: a real SIGTERM (what ECS sends before killing it) stops it
within seconds with exit 75, keeping the shards written and a partial download; the retry resumes instead of
starting over and gives the same clips, in the same order, as an uninterrupted run. A SIGKILL with no notice
loses only the clips not yet recorded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aurax.cli import main
from aurax.dataset.progress import PROGRESS_NAME, PrepareProgress
from aurax.dataset.shards import MANIFEST_NAME, load_manifest, load_split
from aurax_contracts import JobExit
from tests.dataset.mtat_fixture import (
    ELIGIBLE_TRAIN,
    ELIGIBLE_VALIDATION,
    FIXTURE_CLIPS,
    FileServer,
    run_config,
    write_config,
)

#: ECS's default stop timeout: a job still running this long after SIGTERM is killed hard.
ECS_STOP_TIMEOUT_S = 30
#: Small batches and shards, so that an 11-clip dataset is written in several steps.
SMALL = ["--batch-size", "1", "--shard-clips", "2"]


def _argv(tmp_path: Path, source: str, dataset: Path, *extra: str, **rules: object) -> list[str]:
    config = write_config(tmp_path / "config.json", run_config(**rules))
    return ["job", "prepare", "--config", config, "--dataset-uri", str(dataset), "--source", source,
            "--work-dir", str(tmp_path / "work"), *SMALL, *extra]


def _start(argv: list[str], **env: str) -> subprocess.Popen[str]:
    """`aurax ...` as its own process, as the container runs it."""
    environment = {**os.environ, "AURAX_IMDS_ENDPOINT": "off", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "aurax.cli", *argv], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, process: subprocess.Popen[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the job ended ({process.returncode}) first:\n{process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the job")
        time.sleep(0.05)


def _terminate(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then the job must exit by itself before ECS would kill it; returns its stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=ECS_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running {ECS_STOP_TIMEOUT_S} s after SIGTERM") from None
    return err


def _shards(dataset: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dataset.glob("*.npz"))}


def _clips(dataset: Path) -> dict[str, list[tuple[int, str, bytes]]]:
    """Each split's clips in order: id, prompt and codes."""
    return {split: [(c.clip_id, c.prompt, c.codes.astype(np.int16).tobytes())
                    for c in load_split(str(dataset), split)[0]] for split in ("train", "validation")}


#: The rules of these tests: 10 of the 11 eligible clips, since one is damaged.
RULES = {"target_clips": 10}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, extracted_source: Path) -> Path:
    """The fixture source with its second-best clip damaged, so that runs skip a clip before stopping."""
    copy = tmp_path_factory.mktemp("damaged") / "source"
    shutil.copytree(extracted_source, copy)
    (copy / next(path for cid, path, _ in FIXTURE_CLIPS if cid == 2)).write_bytes(b"not an mp3")
    return copy


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    dataset = tmp_path / "ds"
    assert main(_argv(tmp_path, str(source), dataset, **RULES)) == JobExit.SUCCEEDED
    return dataset


def _same_result(dataset: Path, reference: Path) -> None:
    """The same clips in the same order, the same report of kept and skipped clips, the same totals."""
    assert _clips(dataset) == _clips(reference)
    manifest, expected = load_manifest(str(dataset))[0], load_manifest(str(reference))[0]
    assert (manifest.counts, manifest.skipped, manifest.total_seconds) == \
        (expected.counts, expected.skipped, expected.total_seconds)
    assert manifest.skipped == {"corrupt": 1, "too-short": 0, "missing": 0, "known-broken": 1}
    report, reference_report = ((d / "selection-report.json").read_text() for d in (dataset, reference))
    assert report.split('"kept"')[1] == reference_report.split('"kept"')[1]
    assert sorted(_shards(dataset)) == sorted(s.name for s in manifest.shards)
    assert not (dataset / PROGRESS_NAME).exists()


def test_sigterm_while_encoding_keeps_the_shards_and_the_retry_resumes(
        tmp_path: Path, source: Path, uninterrupted: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = tmp_path / "ds"
    argv = _argv(tmp_path, str(source), dataset, **RULES)
    process = _start(argv, AURAX_FAULT_SLOW_BATCH_SECONDS="0.5")
    _wait_for(lambda: (dataset / PROGRESS_NAME).is_file(), process)  # a first shard is written
    err = _terminate(process)
    assert process.returncode == JobExit.INTERRUPTED, err
    assert "interrupted (sigterm)" in err and "run the same command again" in err
    assert not (dataset / MANIFEST_NAME).exists()  # not complete, and never taken for complete
    progress = PrepareProgress.model_validate_json((dataset / PROGRESS_NAME).read_bytes())
    kept = _shards(dataset)
    assert sorted(kept) == sorted(s.name for s in progress.shards) and kept
    assert len(progress.kept) == sum(s.clips for s in progress.shards) < 10
    # Every clip looked at is recorded: the buffered ones were written, the damaged one is listed as skipped.
    assert progress.resume_rank == max(k.rank for k in progress.kept) + 1
    assert [(s.clip_id, s.cause) for s in progress.skipped] == [(2, "corrupt")]

    caplog.set_level("INFO", logger="aurax.dataset.builder")
    assert main(argv) == JobExit.SUCCEEDED
    assert f"resuming: {len(progress.kept)} clips in {len(kept)} shards already written" in caplog.text
    after = _shards(dataset)
    assert {name: after[name] for name in kept} == kept  # the kept shards were not written again
    _same_result(dataset, uninterrupted)


def test_sigkill_without_notice_loses_only_the_unrecorded_clips(
        tmp_path: Path, source: Path, uninterrupted: Path) -> None:
    dataset = tmp_path / "ds"
    argv = _argv(tmp_path, str(source), dataset, **RULES)
    process = _start(argv, AURAX_FAULT_KILL_AFTER_SHARDS="2")
    process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL
    progress = PrepareProgress.model_validate_json((dataset / PROGRESS_NAME).read_bytes())
    assert len(progress.shards) == 1 and len(_shards(dataset)) == 2  # the second shard is not recorded yet
    # The best clip (validation) still waited in its buffer when the first shard was recorded: the retry
    # starts from it again and passes over the clips already in the recorded shard.
    assert progress.resume_rank == 0 and len(progress.kept) == 2
    assert main(argv) == JobExit.SUCCEEDED
    _same_result(dataset, uninterrupted)


def test_sigterm_during_a_download_exits_75_and_the_retry_resumes_it(
        tmp_path: Path, zipped_source: Path, file_server: FileServer) -> None:
    for path in zipped_source.iterdir():
        file_server.files[path.name] = path.read_bytes()
    file_server.slow["mp3.zip.001"] = 0.2  # 1 KiB per 0.2 s: one 16 KiB download chunk per 3.2 s
    dataset = tmp_path / "ds"
    argv = _argv(tmp_path, file_server.url, dataset)
    process = _start(argv)
    partial = tmp_path / "work"

    def downloading() -> bool:
        return any(p.stat().st_size >= 16384 for p in partial.rglob("mp3.zip.001.part"))

    _wait_for(downloading, process)
    err = _terminate(process)
    assert process.returncode == JobExit.INTERRUPTED, err
    assert "while downloading" in err
    kept = next(partial.rglob("mp3.zip.001.part")).stat().st_size
    assert 16384 <= kept < len(file_server.files["mp3.zip.001"]) and not dataset.exists()

    del file_server.slow["mp3.zip.001"]
    file_server.requests.clear()
    assert main(argv) == JobExit.SUCCEEDED
    assert file_server.gets("mp3.zip.001") == [f"bytes={kept}-"]  # resumed, not downloaded again
    clips = _clips(dataset)
    assert sorted(c[0] for c in clips["train"]) == sorted(ELIGIBLE_TRAIN)
    assert sorted(c[0] for c in clips["validation"]) == sorted(ELIGIBLE_VALIDATION)
