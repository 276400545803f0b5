"""`aurax job evaluate` end to end on the tiny model with a fixture checkpoint and dataset, local and S3."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
import soundfile
from moto import mock_aws
from scipy.stats import binomtest

from aurax import storage
from aurax.cli import main
from aurax.evaluate.clips import ClipRecord
from aurax.evaluate.job import eval_uri, read_loss_curves
from aurax_contracts import TINY_MODEL_ID, EvalReport, RunConfig, RunLayout, parse_metric_line
from aurax_control.stats import wilson_interval
from tests.evaluate.fixtures import (
    CHECKPOINT_EPOCH,
    CHECKPOINT_STEP,
    CHECKPOINT_VAL_LOSS,
    PROMPTS,
    TAG_PROMPTS,
    tiny_config,
    write_checkpoint,
    write_dataset,
    write_metrics,
)

CLIPS = 5


def _prepare(root: str, work: Path, config: RunConfig) -> dict[str, str]:
    layout = RunLayout(root, config.run_id)
    dataset_uri = f"{root.rstrip('/')}/datasets/fixture"
    config_uri = layout.config_uri
    storage.write_text(config_uri, config.model_dump_json())
    return {
        "run_uri": layout.run_uri, "dataset_uri": dataset_uri, "config_uri": config_uri,
        "dataset_sha": write_dataset(dataset_uri, config),
        "checkpoint_sha": write_checkpoint(layout.checkpoints_uri, config, work),
    }


def _evaluate(run: dict[str, str], point: str = "decision") -> int:
    return main(["job", "evaluate", "--config", run["config_uri"], "--run-uri", run["run_uri"],
                 "--dataset-uri", run["dataset_uri"], "--point", point])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("bucket").as_uri()
    config = tiny_config(clips=CLIPS)
    run = _prepare(root, tmp_path_factory.mktemp("work"), config)
    write_metrics(RunLayout(root, config.run_id).metrics_uri, config.run_id)
    assert _evaluate(run) == 0
    run["root"] = root
    run["eval_uri"] = RunLayout(root, config.run_id).eval_uri("decision")
    yield run


@pytest.fixture(scope="module")
def report(local_run: dict[str, str]) -> EvalReport:
    return EvalReport.model_validate_json(storage.read_text(local_run["eval_uri"] + "/report.json"))


def test_report_is_written_where_the_layout_says(local_run: dict[str, str]) -> None:
    assert eval_uri(local_run["run_uri"], "decision") == local_run["eval_uri"]
    assert storage.exists(local_run["eval_uri"] + "/report.json")


def test_same_prompts_and_seeds_for_both_arms_cycling_both_prompt_sets(report: EvalReport) -> None:
    arms = {arm: [(c.index, c.prompt, c.prompt_set, c.seed) for c in report.clips if c.arm == arm]
            for arm in ("treatment", "control")}
    assert arms["treatment"] == arms["control"]
    cycle = [(p, "amapiano") for p in PROMPTS] + [(p, "in-distribution") for p in TAG_PROMPTS]
    expected = [(i, *cycle[i % len(cycle)], tiny_config().evaluation.seed + i) for i in range(CLIPS)]
    assert arms["treatment"] == expected


def test_every_clip_is_scored_and_its_audio_and_record_written(local_run: dict[str, str],
                                                               report: EvalReport) -> None:
    assert len(report.clips) == 2 * CLIPS
    audio = {}
    for clip in report.clips:
        assert set(clip.components) == {"log_drum", "tempo", "shakers", "low_end", "keys"}
        assert clip.authentic == (clip.score >= report.score_threshold) and clip.finite and clip.attempt == 1
        data = storage.read_bytes(f"{local_run['eval_uri']}/{clip.audio}")
        samples, rate = soundfile.read(io.BytesIO(data))
        assert rate == 32000 and samples.shape == (32000,)  # clip_seconds of mono audio
        audio[clip.audio] = samples
        record = ClipRecord.model_validate_json(
            storage.read_bytes(f"{local_run['eval_uri']}/{clip.audio.removesuffix('.wav')}.json"))
        assert record.clip == clip
    # treatment is the checkpoint, not the base model: same seed and prompt, different audio
    assert not np.allclose(audio["clips/treatment-0000.wav"], audio["clips/control-0000.wav"])
    assert report.attempts == [1] and report.flags == []
    assert report.generation is not None and report.generation.precision == "fp32"
    assert report.generation.top_k == 250 and report.generation.batch_size == 64


def test_statistics_follow_the_paired_clips(report: EvalReport) -> None:
    for arm, summary in (("treatment", report.treatment), ("control", report.control)):
        clips = [c for c in report.clips if c.arm == arm]
        authentic = sum(c.authentic for c in clips)
        assert (summary.clips, summary.authentic, summary.non_finite) == (CLIPS, authentic, 0)
        assert (summary.wilson_low, summary.wilson_high) == pytest.approx(wilson_interval(authentic, CLIPS))
        assert summary.mean_score == pytest.approx(np.mean([c.score for c in clips]))
    pairs = {c.index: [c.authentic] for c in report.clips if c.arm == "treatment"}
    for c in report.clips:
        if c.arm == "control":
            pairs[c.index].append(c.authentic)
    only_t = sum(t and not k for t, k in pairs.values())
    only_c = sum(k and not t for t, k in pairs.values())
    comparison = report.comparison
    assert (comparison.pairs, comparison.treatment_only, comparison.control_only) == (CLIPS, only_t, only_c)
    assert comparison.difference == pytest.approx(report.treatment.rate - report.control.rate)
    expected = binomtest(only_t, only_t + only_c, 0.5, alternative="greater").pvalue if only_t + only_c else 1.0
    assert comparison.p_value == pytest.approx(expected)
    assert report.control.model == tiny_config().model.model_id


def test_rates_per_prompt_set_and_per_prompt(report: EvalReport) -> None:
    sets = {s.prompt_set: s for s in report.prompt_sets}
    assert set(sets) == {"amapiano", "in-distribution"}
    assert sets["amapiano"].prompts == PROMPTS and sets["in-distribution"].prompts == TAG_PROMPTS
    assert sum(s.comparison.pairs for s in report.prompt_sets) == CLIPS
    per_prompt = {p.prompt: p for p in report.prompts}
    assert set(per_prompt) == {*PROMPTS, *TAG_PROMPTS}
    for prompt, summary in per_prompt.items():
        clips = [c for c in report.clips if c.prompt == prompt and c.arm == "treatment"]
        assert summary.treatment.clips == len(clips)
        assert summary.treatment.authentic == sum(c.authentic for c in clips)
    assert sum(p.treatment.clips for p in report.prompts) == CLIPS


def test_provenance_and_checkpoint_facts(local_run: dict[str, str], report: EvalReport) -> None:
    # The fixture checkpoint ends (0-based) epoch CHECKPOINT_EPOCH: that many + 1 epochs are fully trained.
    assert (report.epoch, report.step) == (CHECKPOINT_EPOCH + 1, CHECKPOINT_STEP)
    assert report.val_loss == CHECKPOINT_VAL_LOSS and report.baseline_val_loss is None  # the fixture has none
    provenance = report.provenance
    assert provenance.checkpoint_sha256 == local_run["checkpoint_sha"]
    assert provenance.dataset_manifest_sha256 == local_run["dataset_sha"]
    assert provenance.checkpoint_uri == f"{local_run['run_uri']}/checkpoints/step-{CHECKPOINT_STEP:09d}-end"
    assert report.treatment.model == provenance.checkpoint_uri
    manifest = storage.read_bytes(provenance.checkpoint_uri + "/manifest.json")
    assert hashlib.sha256(manifest).hexdigest() == provenance.checkpoint_sha256
    assert provenance.code_version
    assert (provenance.base_model, provenance.base_revision) == (TINY_MODEL_ID, None)  # no revisions: built here


def test_html_report_with_its_images_and_audio(local_run: dict[str, str], report: EvalReport) -> None:
    html = storage.read_text(f"{local_run['eval_uri']}/{report.html_report}")
    images = re.findall(r'<img src="([^"]+)"', html)
    # score distributions, components, best and worst spectrograms, loss curves (the metrics exist)
    assert len(images) == 5
    for image in images:
        assert storage.read_bytes(f"{local_run['eval_uri']}/{image}").startswith(b"\x89PNG")
    for caption in ("Score distributions", "components", "Best clip", "Worst clip", "loss"):
        assert caption in html
    for criterion in ("authenticity:", "beats_control:", "finite_audio:", "val_loss:", "val_loss_improvement:"):
        assert criterion in html
    assert "McNemar" in html and "Per prompt set" in html and "in-distribution" in html
    for clip in report.clips:
        assert f'src="{clip.audio}"' in html
    assert report.provenance.checkpoint_sha256 in html and report.provenance.dataset_manifest_sha256 in html
    assert f"<code>{TINY_MODEL_ID}</code> at revision" in html


def test_heartbeats_are_sent_while_evaluating(local_run: dict[str, str]) -> None:
    metrics = RunLayout(local_run["root"], tiny_config().run_id).metrics_uri
    records = [parse_metric_line(line) for uri in storage.list_uris(metrics) if uri.endswith(".jsonl")
               for line in storage.read_text(uri).splitlines() if '"heartbeat"' in line]
    beats = [r for r in records if r.kind == "heartbeat" and r.phase == "evaluate"]
    assert beats
    # The clips finished are the evaluation's progress for the idle watch: counted up to every clip of both arms.
    assert [b.progress.clips for b in beats] == sorted(b.progress.clips for b in beats)
    assert beats[-1].progress.clips == 2 * CLIPS


def test_loss_curves_skip_bad_lines(local_run: dict[str, str]) -> None:
    train, validation, bad = read_loss_curves(RunLayout(local_run["root"], tiny_config().run_id).metrics_uri)
    assert [s for s, _ in train] == list(range(1, 13)) and [s for s, _ in validation] == [6, 12]
    assert bad == 1


def test_missing_checkpoint_or_dataset_is_bad_input(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(run_id="empty-run")
    layout = RunLayout(tmp_path.as_uri(), config.run_id)
    storage.write_text(layout.config_uri, config.model_dump_json())
    run = {"config_uri": layout.config_uri, "run_uri": layout.run_uri,
           "dataset_uri": tmp_path.as_uri() + "/ds"}
    assert _evaluate(run) == 65
    assert "no dataset manifest" in capsys.readouterr().err
    write_dataset(run["dataset_uri"], config)
    assert _evaluate(run) == 65
    assert "no verified checkpoint" in capsys.readouterr().err


def test_clips_too_short_to_score_are_refused_before_generating(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(run_id="short-run", seconds=0.2)
    layout = RunLayout(tmp_path.as_uri(), config.run_id)
    storage.write_text(layout.config_uri, config.model_dump_json())
    run = {"config_uri": layout.config_uri, "run_uri": layout.run_uri, "dataset_uri": tmp_path.as_uri() + "/ds"}
    assert _evaluate(run) == 64  # before the missing dataset (65) or any generation is reached
    assert "evaluation.clip_seconds 0.2 is shorter than the 0.25 s" in capsys.readouterr().err


@pytest.fixture
def s3() -> Iterator[None]:
    with mock_aws():
        storage.reset_clients()
        boto3.client("s3").create_bucket(Bucket="aurax-data")
        yield
    storage.reset_clients()


def test_end_to_end_on_s3(s3: None, tmp_path: Path) -> None:
    config = tiny_config(run_id="s3-run", clips=1)
    run = _prepare("s3://aurax-data", tmp_path, config)
    assert _evaluate(run, point="final") == 0
    out = RunLayout("s3://aurax-data", config.run_id).eval_uri("final")
    report = EvalReport.model_validate_json(storage.read_text(out + "/report.json"))
    assert report.point == "final" and len(report.clips) == 2
    names = {uri.removeprefix(out + "/") for uri in storage.list_uris(out)}
    assert {"report.json", "report.html", "clips/treatment-0000.wav", "clips/control-0000.wav",
            "clips/treatment-0000.json", "clips/control-0000.json"} <= names
    assert sum(n.startswith("plots/") for n in names) == 4  # no metrics in this run: no loss curves


def test_aurax_generate_gives_an_evaluation_clip_again(local_run: dict[str, str], report: EvalReport,
                                                       tmp_path: Path) -> None:
    clip = next(c for c in report.clips if c.arm == "treatment" and c.index == 3)
    out = tmp_path / "listen"
    code = main(["generate", "--checkpoint", f"{local_run['run_uri']}/checkpoints", "--config",
                 local_run["config_uri"], "--prompt", clip.prompt, "--seeds", str(clip.seed), "--out", str(out)])
    assert code == 0
    again, _ = soundfile.read(out / f"0000-seed{clip.seed}.wav")
    original, _ = soundfile.read(io.BytesIO(storage.read_bytes(f"{local_run['eval_uri']}/{clip.audio}")))
    assert np.max(np.abs(again - original)) <= 1 / 32768  # the same draw, within one 16-bit step
    index = json.loads((out / "clips.json").read_text())
    assert index["clips"][0]["score"] == pytest.approx(clip.score, abs=0.01)


def test_aurax_generate_gives_a_control_clip_again(local_run: dict[str, str], report: EvalReport,
                                                   tmp_path: Path) -> None:
    clip = next(c for c in report.clips if c.arm == "control" and c.index == 2)
    out = tmp_path / "listen"
    code = main(["generate", "--config", local_run["config_uri"], "--prompt", clip.prompt, "--seeds", str(clip.seed),
                 "--out", str(out)])  # no --checkpoint: the config's base model, as the control arm loads it
    assert code == 0
    again, _ = soundfile.read(out / f"0000-seed{clip.seed}.wav")
    original, _ = soundfile.read(io.BytesIO(storage.read_bytes(f"{local_run['eval_uri']}/{clip.audio}")))
    assert np.max(np.abs(again - original)) <= 1 / 32768
