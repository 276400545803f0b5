"""RunConfig: defaults match the mission, round trips, and every bad field fails with its name and fix."""

from __future__ import annotations

import json

import pytest

from aurax_contracts import ContractError, RunConfig, load_run_config, parse_run_config
from aurax_contracts.config import MUSICGEN_SMALL


def test_defaults_are_the_missions_figures() -> None:
    config = RunConfig(run_id="amapiano-01")
    assert config.model.model_id == MUSICGEN_SMALL
    assert (config.dataset.target_clips, config.dataset.min_clips) == ("all", 1000)  # README, "The data"
    assert (config.training.total_epochs, config.training.decision_epoch) == (20, 5)
    assert config.monitoring.loss_warn == 10.0
    assert config.monitoring.critical_window_hours == 48
    assert config.monitoring.idle_timeout_minutes == 120
    assert config.budget.budget_usd == 600
    assert config.max_cost_usd == 600
    assert (config.decision.min_authenticity, config.decision.max_val_loss) == (0.35, 3.5)
    assert config.evaluation.score_threshold == 80
    assert config.checkpoint.interval_minutes == 10


def test_yaml_and_json_round_trip() -> None:
    config = parse_run_config("run_id: r-1\ntraining:\n  total_epochs: 4\n  decision_epoch: 2\n")
    again = parse_run_config(config.model_dump_json())
    assert again == config
    assert json.loads(again.model_dump_json())["training"]["decision_epoch"] == 2


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("run_id: Bad_Id", "run_id", "match the pattern"),
        ("run_id: r-1\nbudget: {budget_usd: 0}", "budget.budget_usd", "above 0"),
        ("run_id: r-1\ntraining: {totl_epochs: 3}", "training.totl_epochs", "did you mean 'total_epochs'"),
        ("run_id: r-1\nmodel: {precision: fp8}", "model.precision", "use one of"),
        ("run_id: r-1\ndecision: {min_authenticity: 1.5}", "decision.min_authenticity", "at most 1"),
        ("run_id: r-1\ncheckpoint: {keep_last: 1}", "checkpoint.keep_last", "at least 2"),
        ("run_id: r-1\ndataset: {validation_folders: [z]}", "dataset.validation_folders.0", "match the pattern"),
        ("training: {}", "run_id", "add this field"),
        ("run_id: r-1\nbogus: 1", "bogus", "remove it"),
    ],
)
def test_bad_field_names_the_field_and_the_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_run_config(text)
    message = str(caught.value)
    assert f"{field}:" in message
    assert fix in message


def test_a_rule_across_fields_says_its_own_fix_without_pydantics_wrapping() -> None:
    with pytest.raises(ContractError) as caught:
        parse_run_config("run_id: r-1\nevaluation: {prompts: []}")
    (problem,) = caught.value.problems
    assert problem.startswith("(document): decision.prompt_set 'amapiano' gets no evaluation clips")
    assert problem.endswith("or set decision.prompt_set: all")  # the fix, with nothing after it
    assert "Value error" not in problem


def test_decision_epoch_after_total_is_rejected() -> None:
    with pytest.raises(ContractError, match="decision_epoch .* is after total_epochs"):
        parse_run_config("run_id: r-1\ntraining: {total_epochs: 3, decision_epoch: 5}")


def test_tag_in_both_lists_is_rejected() -> None:
    with pytest.raises(ContractError, match="both included and excluded"):
        parse_run_config("run_id: r-1\ndataset: {include_tags: {house: 1}, exclude_tags: [house]}")


@pytest.mark.parametrize("text", ["[1, 2]", "just text", "run_id: [unclosed"])
def test_non_mapping_or_broken_yaml_is_a_clear_error(text: str) -> None:
    with pytest.raises(ContractError, match="fix:"):
        parse_run_config(text)


def test_fingerprints_follow_what_they_cover() -> None:
    base = RunConfig(run_id="r-1")
    other_budget = RunConfig(run_id="r-2", budget={"budget_usd": 100})
    other_data = RunConfig(run_id="r-1", dataset={"target_clips": 100})
    longer = RunConfig(run_id="r-1", training={"total_epochs": 30})
    assert base.dataset_fingerprint() == other_budget.dataset_fingerprint()
    assert base.dataset_fingerprint() != other_data.dataset_fingerprint()
    # Extending the run after GO must still resume the same checkpoints.
    assert base.training_fingerprint() == longer.training_fingerprint()
    # How often the job reports and its overflow guard change what is seen, not what is trained.
    watched = RunConfig(run_id="r-1", training={"log_every_steps": 50, "max_overflow_steps": 20})
    assert base.training_fingerprint() == watched.training_fingerprint()
    other_rate = RunConfig(run_id="r-1", training={"learning_rate": 1e-4})
    assert base.training_fingerprint() != other_rate.training_fingerprint()


@pytest.mark.parametrize("name", ["run #1.yaml", "what?.yaml", "100% done.yaml", "mix:part2.yaml"])
def test_a_config_file_is_read_literally_by_path_and_by_file_uri(tmp_path, monkeypatch, name: str) -> None:
    # `aurax start`, `config validate`, `estimate` and `dataset plan` read the config through load_run_config.
    (tmp_path / name).write_text("run_id: literal-names\n")
    monkeypatch.chdir(tmp_path)
    assert load_run_config(name).run_id == "literal-names"  # relative: `mix:` is no scheme
    assert load_run_config(str(tmp_path / name)).run_id == "literal-names"
    assert load_run_config((tmp_path / name).as_uri()).run_id == "literal-names"  # escaped by pathlib


@pytest.mark.parametrize(("location", "says"), [
    ("s3://bucket/configs/run.yaml", "aws s3 cp 's3://bucket/configs/run.yaml' run.yaml"),
    ("gs://bucket/run.yaml", "unsupported scheme 'gs'"),
])
def test_a_config_location_that_is_not_a_local_file_is_a_clear_error(location: str, says: str) -> None:
    with pytest.raises(ContractError) as error:
        load_run_config(location)
    assert str(error.value).startswith(f"invalid {location} (") and says in str(error.value)  # named as given


def test_a_config_that_is_not_text_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "run.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ContractError, match="not UTF-8 text"):
        load_run_config(tmp_path / "run.yaml")
