"""`aurax decide REPORT`: the Decide function's rule, offline, labelled as a re-decision, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aurax_contracts import Decision, JobExit
from tests.control.evals import eval_report


@pytest.fixture
def report_json(tmp_path: Path):
    def write(**kwargs: object) -> str:
        path = tmp_path / "report.json"
        path.write_text(eval_report(**kwargs).model_dump_json())  # type: ignore[arg-type]
        return str(path)

    return write


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-decision must not reach AWS: no event, no message, no run state."""
    import boto3

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("aurax decide called AWS")

    monkeypatch.setattr(boto3, "client", refuse)
    monkeypatch.setattr(boto3, "resource", refuse)


def test_re_decides_with_the_decide_rule_and_says_so(aurax, report_json) -> None:
    result = aurax("decide", report_json(authentic=45), "--spend", "120.5")
    assert result.code == 0, result.err
    assert result.out.startswith("RE-DECISION (offline audit, not the run's announced decision) for run run-a: GO")
    for name in ("authenticity", "beats_control", "finite_audio", "cost", "val_loss", "val_loss_improvement"):
        assert f"] {name}:" in result.out
    assert "$120.50" in result.out and "McNemar p" in result.out


def test_json_output_is_a_labelled_decision(aurax, report_json) -> None:
    result = aurax("decide", report_json(authentic=45), "--spend", "10", "--json")
    decision = Decision.model_validate(json.loads(result.out))
    assert decision.re_decision and decision.outcome == "GO" and decision.spend_usd == 10


def test_threshold_changes_after_the_fact(aurax, report_json, run_yaml) -> None:
    report = report_json(authentic=40, control=10)
    assert json.loads(aurax("decide", report, "--spend", "10", "--json").out)["outcome"] == "GO"
    stricter = run_yaml("run_id: run-a\ndecision: {min_authenticity: 0.4}\n")
    out = json.loads(aurax("decide", report, "--config", stricter, "--spend", "10", "--json").out)
    assert out["outcome"] == "NO-GO" and [c["name"] for c in out["criteria"] if not c["passed"]] == ["authenticity"]


def test_without_spend_the_cost_cannot_be_judged(aurax, report_json) -> None:
    result = aurax("decide", report_json(authentic=45))
    assert "NO-GO" in result.out.splitlines()[0] and "[FAIL] cost: not measured" in result.out
    assert "Spend so far not known." in result.out and "$0.00" not in result.out  # not a spend of nothing


def test_bad_input_is_refused_clearly(aurax, report_json, tmp_path: Path) -> None:
    missing = aurax("decide", str(tmp_path / "nope.json"))
    assert missing.code == JobExit.BAD_INPUT and "nope.json" in missing.err
    other = tmp_path / "other.json"
    other.write_text('{"schema_version": 1}')
    wrong = aurax("decide", str(other))
    assert wrong.code == JobExit.BAD_INPUT and "not an evaluation report this version reads" in wrong.err
    negative = aurax("decide", report_json(), "--spend", "-1")
    assert negative.code == JobExit.BAD_CONFIG and "--spend -1" in negative.err
    for spend in ("nan", "inf"):
        unknown = aurax("decide", report_json(), "--spend", spend)
        assert unknown.code == JobExit.BAD_CONFIG and f"--spend {spend}: give the run's spend" in unknown.err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("hello")
    unreadable = aurax("decide", str(garbage))
    assert unreadable.code == JobExit.BAD_INPUT and "reads (Invalid JSON" in unreadable.err


def test_without_config_a_report_in_its_run_is_decided_with_the_runs_own_config(aurax, run_yaml,
                                                                                   tmp_path: Path) -> None:
    """An audit of an older run must apply the settings it was decided with, not today's defaults."""
    from aurax_contracts import RunConfig

    run = tmp_path / "runs" / "run-a"
    report = run / "eval" / "decision" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(eval_report(authentic=40, control=10).model_dump_json())
    assert json.loads(aurax("decide", str(report), "--spend", "1", "--json").out)["outcome"] == "GO"
    stricter = RunConfig.model_validate({"run_id": "run-a", "decision": {"min_authenticity": 0.4}})
    (run / "config.json").write_text(stricter.model_dump_json())
    result = aurax("decide", str(report), "--spend", "1", "--json")
    assert json.loads(result.out)["outcome"] == "NO-GO"
    assert f"deciding with the run's own config {run / 'config.json'}" in result.err
    given = run_yaml("run_id: run-a\ndecision: {min_authenticity: 0.3}\n")
    assert json.loads(aurax("decide", str(report), "--spend", "1", "--json", "--config", given).out)[
        "outcome"] == "GO"  # --config wins over the run's own


@pytest.fixture
def run_with_stricter_config(tmp_path: Path) -> Path:
    """A run folder whose report passes the default rule and whose own config.json makes it a NO-GO."""
    from aurax_contracts import RunConfig

    run = tmp_path / "runs" / "run-a"
    (run / "eval" / "decision").mkdir(parents=True)
    (run / "eval" / "decision" / "report.json").write_text(eval_report(authentic=40, control=10).model_dump_json())
    stricter = RunConfig.model_validate({"run_id": "run-a", "decision": {"min_authenticity": 0.4}})
    (run / "config.json").write_text(stricter.model_dump_json())
    return run


def test_a_relative_report_path_inside_the_run_finds_the_runs_config(aurax, run_with_stricter_config,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same report must get the same verdict whichever folder the auditor runs the command from."""
    monkeypatch.chdir(run_with_stricter_config)
    assert json.loads(aurax("decide", "eval/decision/report.json", "--spend", "1", "--json").out)[
        "outcome"] == "NO-GO"
    monkeypatch.chdir(run_with_stricter_config / "eval" / "decision")
    assert json.loads(aurax("decide", "report.json", "--spend", "1", "--json").out)["outcome"] == "NO-GO"


def test_an_invalid_run_config_beside_the_report_says_where_it_came_from_and_how_to_decide_anyway(
        aurax, run_with_stricter_config, run_yaml) -> None:
    (run_with_stricter_config / "config.json").write_text('{"run_id": "run-a", "decision": {"min_authenticity": 2}}')
    report = str(run_with_stricter_config / "eval" / "decision" / "report.json")
    refused = aurax("decide", report, "--spend", "1")
    assert refused.code == JobExit.BAD_CONFIG
    assert "the run's own config, read because no --config was given" in refused.err
    assert "decision.min_authenticity" in refused.err and "give --config FILE" in refused.err
    given = aurax("decide", report, "--spend", "1", "--config", run_yaml("run_id: run-a\n"))
    assert given.code == 0, given.err


def test_a_report_on_s3_is_decided_with_its_runs_config_on_s3(aurax, run_with_stricter_config,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from aurax import storage

    with mock_aws():
        s3 = boto3.session.Session(region_name="us-east-1").client("s3")  # only S3, and only to read
        s3.create_bucket(Bucket="aurax-data")
        monkeypatch.setattr(storage, "_s3", lambda: s3)
        key = "runs/run-a/eval/decision/report.json"
        s3.put_object(Bucket="aurax-data", Key=key,
                      Body=(run_with_stricter_config / "eval" / "decision" / "report.json").read_bytes())
        uri = f"s3://aurax-data/{key}"
        assert json.loads(aurax("decide", uri, "--spend", "1", "--json").out)["outcome"] == "GO"  # no config yet
        s3.put_object(Bucket="aurax-data", Key="runs/run-a/config.json",
                      Body=(run_with_stricter_config / "config.json").read_bytes())
        result = aurax("decide", uri, "--spend", "1", "--json")
        assert json.loads(result.out)["outcome"] == "NO-GO"
        assert "deciding with the run's own config s3://aurax-data/runs/run-a/config.json" in result.err


def test_a_run_config_s3_will_not_show_says_how_to_decide_without_it(aurax, run_with_stricter_config,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 answers HeadObject with 403, not 404, to a reader without s3:ListBucket: the auditor did not name
    that file, so the error must say that --config decides without it."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from aurax import storage

    with mock_aws():
        s3 = boto3.session.Session(region_name="us-east-1").client("s3")
        s3.create_bucket(Bucket="aurax-data")
        key = "runs/run-a/eval/decision/report.json"
        s3.put_object(Bucket="aurax-data", Key=key,
                      Body=(run_with_stricter_config / "eval" / "decision" / "report.json").read_bytes())

        class NoListBucket:
            def get_object(self, **kwargs: object) -> object:
                return s3.get_object(**kwargs)

            def head_object(self, **kwargs: object) -> object:
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

        monkeypatch.setattr(storage, "_s3", NoListBucket)
        refused = aurax("decide", f"s3://aurax-data/{key}", "--spend", "1")
        assert refused.code == JobExit.BAD_INPUT
        assert "s3://aurax-data/runs/run-a/config.json: 403" in refused.err
        assert "read because no --config was given; give --config FILE" in refused.err
