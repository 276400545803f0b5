"""`aurax dataset plan` and the check `aurax start`, preflight and the prepare job share: the figures, exact
tag sums, the fixes it names, bad annotations, and reading the annotations from the web, S3 or a local copy
(offline)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from aurax.cli import main
from aurax.dataset import source
from aurax.dataset.annotations import AnnotatedClip, Annotations
from aurax.dataset.download import RetryPolicy
from aurax.dataset.plan import TargetUnreachable, make_plan, plan_run
from aurax.dataset.selection import KNOWN_BROKEN, min_clips, rank, tag_prompt
from aurax.errors import InputError
from aurax.preflight import check_dataset_plan
from aurax_contracts import JobExit, RunConfig
from aurax_contracts.config import DatasetSelection
from tests.dataset.mtat_fixture import FileServer, annotations_bytes, run_config, write_config
from tests.dataset.mtat_real import MTAT_TAGS, real_annotations
from tests.dataset.mtat_real import annotations_bytes as real_annotations_bytes


@pytest.fixture
def real_csv(tmp_path: Path) -> Path:
    path = tmp_path / "annotations_final.csv"
    path.write_bytes(real_annotations_bytes())
    return path


def _config(tmp_path: Path, **dataset: object) -> str:
    config = RunConfig.model_validate({"run_id": "plan-test", "dataset": dataset})
    return write_config(tmp_path / "run.json", config)


def _plan_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dataset", "plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- exact arithmetic -------------------------------------------------------------------------------------

def _annotations(*clips: tuple[int, set[str]]) -> Annotations:
    return Annotations(tuple(MTAT_TAGS), tuple(AnnotatedClip(cid, frozenset(tags), f"{'0c'[cid % 2]}/a-b-{cid}.mp3")
                                               for cid, tags in clips))


def test_weights_are_summed_exactly_so_0_1_plus_0_2_reaches_0_3() -> None:
    assert 0.1 + 0.2 > 0.3  # binary floating point would put 0.1 + 0.2 above a 0.3 clip and below 0.3 ...
    rules = DatasetSelection(include_tags={"house": 0.1, "techno": 0.2, "dance": 0.3}, min_score=0.3,
                             target_clips=2, target_tolerance=0)
    ranking = rank(_annotations((1, {"house", "techno"}), (2, {"dance"}), (3, {"house"})), rules)
    assert [c.clip.clip_id for c in sorted(ranking.candidates, key=lambda c: c.clip.clip_id)] == [1, 2]
    assert {c.score for c in ranking.candidates} == {Fraction(3, 10)}
    assert ranking.rejected == {"below-min-score": 1}


@pytest.mark.parametrize(("first", "second", "threshold"), [
    (0.7, 0.1, 0.8), (0.3, 0.6, 0.9), (2.675, 0.005, 2.68), (0.1, 0.2, 0.3), (1.1, 2.2, 3.3),
])
def test_a_sum_that_binary_floats_would_round_below_the_threshold_still_reaches_it(
        tmp_path: Path, real_csv: Path, capsys: pytest.CaptureFixture[str],
        first: float, second: float, threshold: float) -> None:
    """Float traps both ways (0.7 + 0.1 is 0.7999999999999999 in binary, 0.1 + 0.2 is 0.30000000000000004), through
    the config file as a user writes it: a clip with both tags reaches the threshold, one with either alone does
    not."""
    assert (first + second < threshold) or (first + second > threshold)  # each pair is a real float trap
    config = tmp_path / "run.yaml"
    config.write_text(f"run_id: float-trap\ndataset:\n  include_tags: {{techno: {first}, dance: {second}}}\n"
                      f"  min_score: {threshold}\n  exclude_tags: []\n  excluded_folders: []\n  min_clips: 1\n")
    code, out, _ = _plan_cli(capsys, "--config", str(config), "--annotations", str(real_csv), "--json")
    plan = json.loads(out)
    both = sum(1 for c in real_annotations().clips if {"techno", "dance"} <= c.tags and c.mp3_path not in KNOWN_BROKEN)
    assert code == JobExit.SUCCEEDED and both > 0
    assert sum(plan["eligible"].values()) == both
    assert {t["tag"]: t["clips"] for t in plan["tags"]} == {"techno": both, "dance": both}


def test_equal_exact_scores_are_ties_broken_by_the_seed_only() -> None:
    """0.1 + 0.2 and 0.3 tie exactly: which comes first depends on the seeded hash, not on rounding."""
    clips = [(i, {"house", "techno"}) for i in range(1, 40, 2)] + [(i, {"dance"}) for i in range(2, 40, 2)]
    firsts = set()
    for seed in range(8):
        rules = DatasetSelection(include_tags={"house": 0.1, "techno": 0.2, "dance": 0.3}, min_score=0.3, seed=seed,
                                 target_clips=40, target_tolerance=0)
        order = [c.clip.clip_id % 2 for c in rank(_annotations(*clips), rules).candidates]
        firsts.add(order[0])
        assert sorted(order) == [0] * 19 + [1] * 20 or sorted(order) == [0] * 20 + [1] * 20
        assert order != sorted(order) and order != sorted(order, reverse=True)  # interleaved: real ties
    assert firsts == {0, 1}


@pytest.mark.parametrize(("target", "tolerance", "floor", "fewest"), [
    ("all", 0.05, 1000, 1000), ("all", 0.5, 7, 7), (8000, 0.05, 1000, 7600), (11, 0.2, 1000, 9), (10, 0.3, 5, 7),
])
def test_the_floor_is_min_clips_for_all_eligible_else_the_target_less_its_tolerance(
        target: int | str, tolerance: float, floor: int, fewest: int) -> None:
    assert min_clips(DatasetSelection(target_clips=target, target_tolerance=tolerance, min_clips=floor)) == fewest


def test_default_target_is_all_eligible_with_the_documented_floor() -> None:
    rules = DatasetSelection()
    assert rules.target_clips == "all" and rules.min_clips == 1000 and rules.min_score == 3.0


def test_prompt_of_a_tag_set_is_the_training_prompt() -> None:
    """What the evaluation calls to write in-distribution prompts: the same words as the training prompts."""
    rules = run_config().dataset
    ranking = rank(_annotations((2, {"house", "percussion", "electronic", "fast"})), rules)
    assert ranking.candidates[0].prompt == "house, percussion, electronic, fast"
    assert tag_prompt({"fast", "electronic", "house", "percussion"}, rules.include_tags) == ranking.candidates[0].prompt
    assert tag_prompt(["piano", "no such tag"], rules.include_tags) == "piano"


# ---- the command ------------------------------------------------------------------------------------------

def test_plan_prints_figures_per_folder_and_split_scores_and_tags(tmp_path: Path, real_csv: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, excluded_folders=["e"], min_clips=500)
    code, out, _ = _plan_cli(capsys, "--config", config, "--annotations", str(real_csv))
    assert code == JobExit.SUCCEEDED
    assert "7,154 clips, 188 tag columns" in out
    assert "c       validation  1,825           434            1,147             0       244" in out
    assert "e       excluded    1,547" in out and "(119)" in out
    assert "eligible     train 488, validation 244" in out
    assert "       3      120          732  <- min_score 3: eligible from here up" in out  # the 732 eligible
    assert "techno" in out and "removed by exclude_tags: classical" in out
    assert "target MET: 732 clips selected, at least 500 needed" in out


def test_plan_that_cannot_be_met_exits_64_with_fixes_and_json(tmp_path: Path, real_csv: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, excluded_folders=[], target_clips=2000)
    code, out, _ = _plan_cli(capsys, "--config", config, "--annotations", str(real_csv))
    assert code == JobExit.BAD_CONFIG
    assert "target NOT MET" in out and "851 eligible clips, fewer than the 1,900 needed" in out
    assert "fix: set dataset.target_clips: 851 (851 clips selected: train 607, validation 244)" in out
    assert "fix: set dataset.min_score: 1.0 (1,931 clips selected: train 1,430, validation 501)" in out
    code, out, _ = _plan_cli(capsys, "--config", config, "--annotations", str(real_csv), "--json")
    plan = json.loads(out)
    assert code == JobExit.BAD_CONFIG and plan["met"] is False and plan["eligible"] == {"train": 607, "validation": 244}
    assert {f["folder"]: f["eligible"] for f in plan["folders"]} == {"c": 244, "d": 156, "e": 119, "f": 332}
    assert plan["fixes"][0] == {"changes": {"dataset.target_clips": 851},
                                "outcome": "851 clips selected: train 607, validation 244"}
    assert plan["score_distribution"][0] == {"score": 11.0, "clips": 4, "at_or_above": 4}


def test_a_tag_the_annotations_lack_exits_64(tmp_path: Path, real_csv: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, include_tags={"amapiano": 3.0})
    code, _, err = _plan_cli(capsys, "--config", config, "--annotations", str(real_csv))
    assert code == JobExit.BAD_CONFIG and "'amapiano' is not a MagnaTagATune tag" in err


def test_a_folder_or_file_uri_finds_the_annotations(tmp_path: Path, real_csv: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, source_uri=str(tmp_path), excluded_folders=[], min_clips=800)
    assert _plan_cli(capsys, "--config", config)[0] == JobExit.SUCCEEDED  # dataset.source_uri, a folder
    assert _plan_cli(capsys, "--config", config, "--annotations", real_csv.as_uri())[0] == JobExit.SUCCEEDED


# ---- bad annotations --------------------------------------------------------------------------------------

def _assert_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, message: str) -> None:
    """`aurax dataset plan` on these annotation bytes exits 65 saying `message` and how to fix it."""
    bad = tmp_path / "annotations_final.csv"
    bad.write_bytes(data)
    code, _, err = _plan_cli(capsys, "--config", _config(tmp_path), "--annotations", str(bad))
    assert code == JobExit.BAD_INPUT and message in err and "download annotations_final.csv again" in err

@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty"),
    (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>", "is an HTML or XML page"),
    (annotations_bytes().replace(b"\t", b","), "the file is separated by ','"),
    (b"\x1f\x8b\x08\x00compressed", "is gzip-compressed"),
    (annotations_bytes().split(b"\r\n")[0] + b"\r\n", "has a header but no clip rows"),
    (annotations_bytes().replace(b'\t"mp3_path"', b""), "it has no 'mp3_path' column"),
])
def test_bad_annotations_exit_65_saying_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      data: bytes, message: str) -> None:
    _assert_refused(tmp_path, capsys, data, message)


def test_missing_annotations_file_says_how_to_point_at_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _plan_cli(capsys, "--config", _config(tmp_path), "--annotations", str(tmp_path / "none.csv"))
    assert code == JobExit.BAD_INPUT and "cannot read the annotations" in err and "--annotations" in err


# ---- from the web, once, then offline ---------------------------------------------------------------------

@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "LAPTOP_RETRY", RetryPolicy(attempts=2, sleep=lambda _: None, connect_timeout_s=2))


def test_web_annotations_are_downloaded_once_then_read_offline(
        tmp_path: Path, file_server: FileServer, quick_retries: None) -> None:
    file_server.files["annotations_final.csv"] = real_annotations_bytes()
    rules = DatasetSelection(source_uri=file_server.url, excluded_folders=[], min_clips=800)
    first = plan_run(rules)
    assert first.met and "downloaded to" in first.annotations
    file_server.files.clear()  # the site is gone: the cached copy serves
    again = plan_run(rules)
    assert again.met and "cached copy" in again.annotations
    assert len(file_server.gets("annotations_final.csv")) == 1


def test_unreachable_site_names_the_offline_route(tmp_path: Path, quick_retries: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, source_uri="http://127.0.0.1:9/magnatagatune/")  # nothing listens on port 9
    code, _, err = _plan_cli(capsys, "--config", config)
    assert code == JobExit.BAD_INPUT
    assert "cannot download the annotations" in err and "--annotations ./annotations_final.csv" in err


def test_an_error_page_served_as_the_file_is_not_kept_in_the_cache(
        tmp_path: Path, file_server: FileServer, quick_retries: None) -> None:
    file_server.files["annotations_final.csv"] = b"<html><body>Please log in</body></html>"
    rules = DatasetSelection(source_uri=file_server.url)
    with pytest.raises(InputError, match="is an HTML or XML page"):
        plan_run(rules)
    file_server.files["annotations_final.csv"] = real_annotations_bytes()
    assert plan_run(rules.model_copy(update={"excluded_folders": [], "min_clips": 800})).met
    assert len(file_server.gets("annotations_final.csv")) == 2


# ---- the same check in preflight and the prepare job ------------------------------------------------------

def test_preflight_runs_the_plan_before_the_dataset_exists(tmp_path: Path, real_csv: Path) -> None:
    good = _config(tmp_path, source_uri=str(tmp_path), excluded_folders=[], min_clips=800)
    passed = check_dataset_plan(good, str(tmp_path / "ds"))
    assert passed.status == "passed" and "851 clips selected (train 607, validation 244)" in passed.detail
    (tmp_path / "run.json").unlink()
    bad = _config(tmp_path, source_uri=str(tmp_path))
    failed = check_dataset_plan(bad, str(tmp_path / "ds"))
    assert failed.status == "failed" and "fewer than the 1,000 needed" in failed.detail
    assert "fix: set dataset.excluded_folders" in failed.detail
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    assert check_dataset_plan(bad, str(tmp_path / "ds")).status == "skipped"


def test_unmet_plan_raises_naming_each_fix() -> None:
    plan = make_plan(real_annotations(), DatasetSelection(excluded_folders=[]), "fixture")
    with pytest.raises(TargetUnreachable) as caught:
        plan.require_met()
    text = str(caught.value)
    assert text.startswith("the dataset selection (dataset.*) against fixture cannot be met:")
    assert "fix: set dataset.min_clips: 851" in text


# ---- the real file's variants and damage (review of issue 13) ---------------------------------------------

def _real_variant(kind: str) -> bytes:
    data = real_annotations_bytes()
    return {"bom": b"\xef\xbb\xbf" + data, "lf": data.replace(b"\r\n", b"\n"), "cr": data.replace(b"\r\n", b"\r"),
            "unquoted": data.replace(b'"', b"")}[kind]


@pytest.mark.parametrize("kind", ["bom", "lf", "cr", "unquoted"])
def test_harmless_variants_of_the_real_file_give_the_same_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                kind: str) -> None:
    """A copy re-saved with a byte-order mark, LF or CR line ends or without the quotes holds the same labels."""
    config = _config(tmp_path, excluded_folders=[], min_clips=800)
    variant, original = tmp_path / "variant.csv", tmp_path / "annotations_final.csv"
    variant.write_bytes(_real_variant(kind))
    original.write_bytes(real_annotations_bytes())
    code, out, _ = _plan_cli(capsys, "--config", config, "--annotations", str(variant), "--json")
    expected = _plan_cli(capsys, "--config", config, "--annotations", str(original), "--json")[1]
    assert code == JobExit.SUCCEEDED
    assert {**json.loads(out), "annotations": ""} == {**json.loads(expected), "annotations": ""}


def _cut_inside_a_token(data: bytes) -> bytes:
    """`data` cut in the middle of the file, inside a quoted token (a download cut short)."""
    middle = data.index(b'.mp3"', len(data) // 2)
    return data[:middle]


@pytest.mark.parametrize(("data", "message"), [
    # An error page saved with blank lines (or a server's whitespace) before its markup.
    (b"\r\n\r\n  <!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>", "is an HTML or XML page"),
    (b"\n<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "is an HTML or XML page"),
    # A download cut short inside a row: it ends in the middle of a quoted token, or between two fields.
    (_cut_inside_a_token(real_annotations_bytes()), "ends in the middle of a row"),
    (_cut_inside_a_token(real_annotations_bytes()).rsplit(b"\t", 1)[0], "ends in the middle of a row"),
])
def test_damaged_real_files_are_refused_saying_what_happened(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             data: bytes, message: str) -> None:
    _assert_refused(tmp_path, capsys, data, message)


def test_a_file_cut_at_a_row_boundary_says_it_holds_fewer_clips_than_published(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing in a file cut between two rows is malformed; the plan says how many clips it holds against the
    published 25,863, so a partial copy's figures are not taken for the real ones."""
    partial = tmp_path / "annotations_final.csv"
    partial.write_bytes(b"\r\n".join(real_annotations_bytes().split(b"\r\n")[:1001]) + b"\r\n")
    code, out, _ = _plan_cli(capsys, "--config", _config(tmp_path), "--annotations", str(partial))
    assert code == JobExit.BAD_CONFIG
    assert "1,000 clips, 188 tag columns\n             (the published file has 25,863 clips: a partial copy?" in out
    code, out, _ = _plan_cli(capsys, "--config", _config(tmp_path), "--annotations", str(partial), "--json")
    assert json.loads(out)["published_clips"] == 25_863


def test_a_published_tag_column_missing_from_the_file_is_bad_input_not_a_bad_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`house` is an MTAT tag: when the file has no `house` column the file is incomplete, the config is fine."""
    rows = [line.split(b"\t") for line in real_annotations_bytes().split(b"\r\n") if line]
    column = rows[0].index(b'"house"')
    bad = tmp_path / "annotations_final.csv"
    bad.write_bytes(b"".join(b"\t".join(r[:column] + r[column + 1:]) + b"\r\n" for r in rows))
    code, _, err = _plan_cli(capsys, "--config", _config(tmp_path), "--annotations", str(bad))
    assert code == JobExit.BAD_INPUT, err
    assert "has no column for 'house'" in err and "dataset.include_tags" in err
    assert "download annotations_final.csv again" in err and "did you mean" not in err
    # A name that is no MTAT tag at all is still the config's fault (exit 64, with close matches).
    code, _, err = _plan_cli(capsys, "--config", _config(tmp_path, include_tags={"hous": 3.0}),
                             "--annotations", str(bad))
    assert code == JobExit.BAD_CONFIG and "'hous' is not a MagnaTagATune tag" in err


def test_annotations_on_s3_are_read_by_file_folder_or_prefix(tmp_path: Path) -> None:
    """An S3 copy (what a team shares, or the run's own source bucket) plans like a local one, named by the
    file, the prefix with or without its trailing slash; a prefix without the file names the offline route."""
    import boto3
    from moto import mock_aws

    from aurax import storage

    rules = DatasetSelection(excluded_folders=[], min_clips=800)
    with mock_aws():
        storage.reset_clients()
        try:
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="team-data")
            client.put_object(Bucket="team-data", Key="mtat/annotations_final.csv", Body=real_annotations_bytes())
            for uri in ("s3://team-data/mtat/annotations_final.csv", "s3://team-data/mtat/", "s3://team-data/mtat"):
                plan = plan_run(rules, uri, tmp_path / "cache")
                assert plan.met and plan.selected == {"train": 607, "validation": 244}
                assert plan.annotations == "s3://team-data/mtat/annotations_final.csv"
            with pytest.raises(InputError, match="cannot read the annotations at s3://team-data/other/"):
                plan_run(rules, "s3://team-data/other/", tmp_path / "cache")
        finally:
            storage.reset_clients()
