"""The go/no-go rule: exact bounds, the paired comparison, cost and validation loss (no AWS)."""

from __future__ import annotations

import pytest

from aurax_contracts import RunConfig
from aurax_control.decision import criterion_line, decide, describe, evaluation_criteria
from aurax_control.stats import clopper_pearson_lower

from .evals import arm, comparison, eval_report
from .records import T0

CONFIG = RunConfig(run_id="run-a", budget={"budget_usd": 600})
NAMES = ["authenticity", "beats_control", "finite_audio", "cost", "val_loss", "val_loss_improvement"]


def by_name(decision_or_list: object) -> dict:
    criteria = getattr(decision_or_list, "criteria", decision_or_list)
    return {c.name: c for c in criteria}  # type: ignore[attr-defined]


def test_every_criterion_passes_and_is_shown_with_its_evidence() -> None:
    decision = decide(eval_report(authentic=45, control=15), 100.0, CONFIG, T0)
    assert decision.outcome == "GO" and [c.name for c in decision.criteria] == NAMES
    c = by_name(decision)
    assert c["authenticity"].value == pytest.approx(0.45) and c["authenticity"].p_value < 0.05
    assert c["authenticity"].interval[0] == pytest.approx(clopper_pearson_lower(135, 300))
    assert c["beats_control"].value == pytest.approx(0.30) and c["beats_control"].p_value < 1e-10
    assert c["val_loss_improvement"].value == pytest.approx(0.6)
    text = describe(decision)
    for part in ("GO at the decision point", "95% interval 40.2% to 100.0%", "p = ", "McNemar",
                 "val_loss_improvement", "$100.00"):
        assert part in text, part


def test_a_point_estimate_at_the_threshold_is_not_enough() -> None:
    # The example: 35/100 used to pass although its 95% interval is 26-45%.
    decision = decide(eval_report(authentic=35, control=10, clips=100), 100.0, CONFIG, T0)
    failed = by_name(decision)["authenticity"]
    assert decision.outcome == "NO-GO" and [c.name for c in decision.failed] == ["authenticity"]
    assert failed.value == pytest.approx(0.35) and failed.interval[0] < 0.35 and failed.p_value > 0.05
    assert "falls short of 35%" in failed.detail


@pytest.mark.parametrize(("clips", "least"), [(100, 44), (200, 82), (300, 120)])
def test_authenticity_needs_the_exact_tests_critical_count(clips: int, least: int) -> None:
    # An exact one-sided test against 35% at 5% needs at least 44/100, 82/200, 120/300 authentic clips.
    def passes(authentic: int) -> bool:
        report = eval_report(authentic=100 * authentic / clips, control=0, clips=clips)
        criterion = by_name(evaluation_criteria(report, CONFIG.decision))["authenticity"]
        assert (criterion.p_value <= 0.05) == criterion.passed  # the bound and the test agree
        return criterion.passed

    assert passes(least) and not passes(least - 1)


def test_a_treatment_no_better_than_control_fails_even_above_the_threshold() -> None:
    report = eval_report(authentic=50, control=48, clips=300)
    decision = decide(report, 100.0, CONFIG, T0)
    assert [c.name for c in decision.failed] == ["beats_control"]
    assert by_name(decision)["beats_control"].p_value > 0.05


def test_the_comparison_is_paired_on_the_discordant_pairs() -> None:
    # 30 vs 20 authentic of 100: unpaired it is unclear; paired, all 20 control wins also won by treatment.
    paired = {"treatment": arm("t", 30), "control": arm("c", 20), "comparison": comparison(10, 0, 100, both=20)}
    base = eval_report(clips=100)
    report = base.model_copy(update={**paired, "prompt_sets": [base.prompt_sets[0].model_copy(update=paired)]})
    criterion = by_name(evaluation_criteria(report, CONFIG.decision))["beats_control"]
    assert criterion.p_value == pytest.approx(0.5 ** 10) and criterion.passed


@pytest.mark.parametrize(("spend", "val_loss", "baseline", "failed"), [
    (600.01, 3.0, 3.6, ["cost"]),
    (None, 3.0, 3.6, ["cost"]),
    (100.0, 3.51, 3.9, ["val_loss"]),
    (100.0, None, 3.6, ["val_loss", "val_loss_improvement"]),
    (100.0, 3.0, 3.04, ["val_loss_improvement"]),
    (100.0, 3.0, None, ["val_loss_improvement"]),
])
def test_cost_and_validation_loss(spend: float | None, val_loss: float | None, baseline: float | None,
                                  failed: list[str]) -> None:
    decision = decide(eval_report(authentic=45, val_loss=val_loss, baseline_val_loss=baseline), spend, CONFIG, T0)
    assert decision.outcome == "NO-GO" and [c.name for c in decision.failed] == failed
    assert "FAIL" in describe(decision)


def test_relative_val_loss_can_be_dropped_for_runs_without_a_baseline() -> None:
    config = RunConfig(run_id="run-a", decision={"min_val_loss_improvement": None})
    decision = decide(eval_report(authentic=45, baseline_val_loss=None), 10.0, config, T0)
    assert decision.outcome == "GO" and "val_loss_improvement" not in by_name(decision)
    missing = by_name(decide(eval_report(authentic=45, baseline_val_loss=None), 10.0, CONFIG, T0))
    assert "min_val_loss_improvement: null" in missing["val_loss_improvement"].detail


def test_non_finite_clips_fail_the_decision() -> None:
    decision = decide(eval_report(authentic=45, non_finite=3), 10.0, CONFIG, T0)
    assert [c.name for c in decision.failed] == ["finite_audio"]
    tolerant = RunConfig(run_id="run-a", decision={"max_non_finite_clips": 3})
    assert decide(eval_report(authentic=45, non_finite=3), 10.0, tolerant, T0).outcome == "GO"


def test_settings_change_the_rule() -> None:
    report = eval_report(authentic=40, control=35, clips=300)
    assert decide(report, 10.0, CONFIG, T0).outcome == "NO-GO"
    relaxed = RunConfig(run_id="run-a", decision={"improvement_alpha": 1.0, "min_authenticity": 0.3,
                                                  "max_cost_usd": 50})
    assert decide(report, 10.0, relaxed, T0).outcome == "GO"
    assert decide(report, 60.0, relaxed, T0).failed[0].name == "cost"
    strict = RunConfig(run_id="run-a", decision={"authenticity_confidence": 0.99})
    assert by_name(decide(eval_report(authentic=40), 10.0, strict, T0))["authenticity"].confidence == 0.99


def test_a_prompt_set_can_be_decided_on_its_own() -> None:
    from aurax_contracts.evaluation import PromptSetSummary

    base = eval_report(authentic=45, control=15)
    weak = PromptSetSummary(prompt_set="amapiano", prompts=["p"], treatment=arm("t", 10), control=arm("c", 9),
                            comparison=comparison(10, 9, 100))
    report = base.model_copy(update={"prompt_sets": [weak]})
    config = RunConfig(run_id="run-a", decision={"prompt_set": "amapiano"})
    decision = decide(report, 10.0, config, T0)
    assert decision.prompt_set == "amapiano" and decision.treatment.authentic == 10
    assert {c.name for c in decision.failed} == {"authenticity", "beats_control"}
    absent = decide(report, 10.0, RunConfig(run_id="run-a", decision={"prompt_set": "in-distribution"}), T0)
    assert by_name(absent)["authenticity"].value is None
    assert "no clips of prompt set 'in-distribution'" in by_name(absent)["authenticity"].detail
    assert "prompt set amapiano: treatment 10/100" in describe(decision)


def test_a_re_decision_is_labelled_as_such() -> None:
    decision = decide(eval_report(authentic=45), 10.0, CONFIG, T0, re_decision=True)
    assert decision.re_decision and describe(decision).startswith("RE-DECISION (offline audit")


def test_criterion_line_formats_each_kind() -> None:
    lines = {c.name: criterion_line(c) for c in decide(eval_report(authentic=45), 10.0, CONFIG, T0).criteria}
    assert lines["authenticity"].startswith("[pass] authenticity: 45.0% (95% interval")
    assert "needs > +0.0%" in lines["beats_control"] and "needs <= 0 clips" in lines["finite_audio"]
    assert "$10.00" in lines["cost"] and "needs <= 3.5" in lines["val_loss"]


def _with_sets(tags: tuple[int, int], prose: tuple[int, int]):  # type: ignore[no-untyped-def]
    """A NO-GO report whose prompt sets have (treatment, control) authentic counts of 100 pairs each."""
    from aurax_contracts.evaluation import PromptSetSummary

    def summary(name: str, t: int, c: int) -> PromptSetSummary:
        return PromptSetSummary(prompt_set=name, prompts=[name], treatment=arm("t", t), control=arm("c", c),  # type: ignore[arg-type]
                                comparison=comparison(t, c, 100))

    report = eval_report(authentic=20, control=10).model_copy(update={
        "prompt_sets": [summary("amapiano", *prose), summary("in-distribution", *tags)]})
    return decide(report, 10.0, CONFIG, T0)


def test_a_no_go_tells_unlearnt_from_out_of_distribution_prompts() -> None:
    from aurax_contracts import AbortReason
    from aurax_control.report import suggestions

    learnt = suggestions(AbortReason.NO_GO, None, None, None, _with_sets(tags=(30, 10), prose=(10, 10)))
    assert any("prose prompts are outside the captions it was trained on" in s for s in learnt)
    unlearnt = suggestions(AbortReason.NO_GO, None, None, None, _with_sets(tags=(11, 10), prose=(9, 10)))
    assert any("the model did not learn the target from this data" in s for s in unlearnt)
    assert not any("outside the captions" in s for s in unlearnt)


def test_the_counted_prompt_set_is_named_in_every_criterion_and_message() -> None:
    decision = decide(eval_report(authentic=45, control=15), 10.0, CONFIG, T0)
    c = by_name(decision)
    assert "treatment clips of prompt set 'amapiano' authentic" in c["authenticity"].detail
    assert "pairs of prompt set 'amapiano'" in c["beats_control"].detail
    everything = decide(eval_report(authentic=45, control=15), 10.0,
                        RunConfig(run_id="run-a", decision={"prompt_set": "all"}), T0)
    assert "treatment clips of all prompt sets authentic" in by_name(everything)["authenticity"].detail


def test_a_report_without_the_counted_set_says_why_and_how_to_re_decide() -> None:
    # A report written before per-prompt-set summaries existed, re-decided with today's default (amapiano).
    old = eval_report(authentic=45, control=15).model_copy(update={"prompt_sets": []})
    decision = decide(old, 10.0, CONFIG, T0, re_decision=True)
    detail = by_name(decision)["authenticity"].detail
    assert "no per-prompt-set summaries" in detail and "decision.prompt_set: all" in detail
    assert "decision.prompt_set: all" in by_name(decision)["beats_control"].detail
    # The whole-report counts shown beside it are not passed off as the missing set's.
    message = describe(decision)
    assert "Clips counted: prompt set 'amapiano'. Treatment" not in message
    assert "prompt set 'amapiano': none in the report" in message
    # A report whose run gave the set no prompts names the sets it has.
    only_tags = eval_report(authentic=45, control=15)
    only_tags = only_tags.model_copy(update={"prompt_sets": [only_tags.prompt_sets[0].model_copy(
        update={"prompt_set": "in-distribution"})]})
    detail = by_name(decide(only_tags, 10.0, CONFIG, T0))["authenticity"].detail
    assert "it has prompt set in-distribution" in detail and "decision.prompt_set: all" in detail
