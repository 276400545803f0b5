"""The go/no-go rule: GO only when every criterion passes; a value that could not be measured fails.

The criteria (settings in `DecisionConfig`, the rule explained in docs/operations.md):
- authenticity: the treatment's one-sided exact (Clopper-Pearson) lower confidence bound of its authentic share
  clears `min_authenticity` (the same as the exact one-sided binomial test at 1 - confidence);
- beats_control: treatment beats control by McNemar's exact one-sided test on the matched pairs (clip i of
  both arms has the same prompt and seed) at `improvement_alpha`;
- finite_audio: at most `max_non_finite_clips` clips whose generation produced NaN/Inf;
- cost: spend so far within the cost limit;
- val_loss: validation loss at most `max_val_loss`;
- val_loss_improvement: validation loss at least `min_val_loss_improvement` below the untouched model's.

Statistics come from the counts in the report (`stats`, pure Python), so `aurax decide` can re-decide a report
offline with other thresholds and get exactly what this function would say.
"""

from __future__ import annotations

from datetime import datetime

from aurax_contracts import Criterion, Decision, EvalReport, RunConfig
from aurax_contracts.config import DecisionConfig
from aurax_contracts.evaluation import GroupSummary

from .stats import binomial_test_greater, clopper_pearson_lower, mcnemar_exact_greater, paired_difference_lower

#: Confidence of the bound shown beside McNemar's p-value when the configured alpha is above 0.5 (a dropped
#: requirement): 0.5 makes the bound the point estimate.
_MIN_SHOWN_CONFIDENCE = 0.5


def selected_group(report: EvalReport, prompt_set: str) -> GroupSummary | None:
    """The arms and comparison the authenticity criteria count: every clip, or one prompt set's."""
    if prompt_set == "all":
        return GroupSummary(treatment=report.treatment, control=report.control, comparison=report.comparison)
    return next((s for s in report.prompt_sets if s.prompt_set == prompt_set), None)


def _counted(prompt_set: str) -> str:
    """The clips a criterion counted, in words: `of prompt set 'amapiano'` or `of all prompt sets`."""
    return "of all prompt sets" if prompt_set == "all" else f"of prompt set '{prompt_set}'"


def missing_set(report: EvalReport, prompt_set: str) -> str:
    """Why the report has no clips of `prompt_set`, and how to re-decide it."""
    present = [s.prompt_set for s in report.prompt_sets]
    has = (f"it has prompt set {' and '.join(present)}: the run generated no '{prompt_set}' clips (the set had no "
           "prompts, or evaluation.clips_per_model ended before them in the prompt cycle)" if present else
           "it has no per-prompt-set summaries (written before they existed)")
    others = "".join(f" (or {p})" for p in present)
    return (f"no clips of prompt set '{prompt_set}' in the evaluation report: {has}; re-decide with "
            f"`aurax decide REPORT --config run.yaml` setting decision.prompt_set: all{others}")


def authenticity(group: GroupSummary | None, rules: DecisionConfig, prompt_set: str,
                 missing: str = "") -> Criterion:
    """`missing`: why the report lacks `prompt_set`'s clips (the detail shown when `group` is None)."""
    threshold, confidence = rules.min_authenticity, rules.authenticity_confidence
    common = dict(name="authenticity", threshold=threshold, comparison=">=", confidence=confidence,
                  alpha=1 - confidence, test="exact one-sided binomial test (Clopper-Pearson lower bound)")
    if group is None or group.treatment.clips == 0:
        return Criterion(value=None, passed=False, **common,  # type: ignore[arg-type]
                         detail=missing or f"no treatment clips {_counted(prompt_set)} in the evaluation report")
    k, n = group.treatment.authentic, group.treatment.clips
    lower = clopper_pearson_lower(k, n, confidence)
    p_value = binomial_test_greater(k, n, threshold)
    passed = lower >= threshold
    return Criterion(
        value=k / n, passed=passed, interval=(lower, 1.0), p_value=p_value, **common,  # type: ignore[arg-type]
        detail=f"{k}/{n} treatment clips {_counted(prompt_set)} authentic ({k / n:.1%}); its {confidence:.0%} "
               f"lower bound {lower:.1%} {'clears' if passed else 'falls short of'} {threshold:.0%} "
               f"(exact binomial p = {p_value:.3g})")


def beats_control(group: GroupSummary | None, rules: DecisionConfig, prompt_set: str,
                  missing: str = "") -> Criterion:
    alpha = rules.improvement_alpha
    confidence = max(1 - alpha, _MIN_SHOWN_CONFIDENCE)
    common = dict(name="beats_control", threshold=0.0, comparison=">", confidence=confidence, alpha=alpha,
                  test="McNemar exact one-sided test on the matched pairs")
    if group is None or group.comparison.pairs == 0:
        return Criterion(value=None, passed=False, **common,  # type: ignore[arg-type]
                         detail=missing or f"no matched pairs {_counted(prompt_set)} in the evaluation report")
    c = group.comparison
    p_value = mcnemar_exact_greater(c.treatment_only, c.control_only)
    lower = paired_difference_lower(c.treatment_only, c.control_only, c.pairs, confidence)
    difference = (c.treatment_only - c.control_only) / c.pairs
    passed = p_value <= alpha
    return Criterion(
        value=difference, passed=passed, interval=(lower, 1.0), p_value=p_value, **common,  # type: ignore[arg-type]
        detail=f"treatment {group.treatment.authentic} vs control {group.control.authentic} authentic of "
               f"{c.pairs} pairs {_counted(prompt_set)} with the same prompt and seed ({difference:+.1%}); "
               f"{c.treatment_only} pairs only treatment, {c.control_only} only control; McNemar p = {p_value:.3g} "
               f"{'<=' if passed else '>'} {alpha:g}")


def finite_audio(report: EvalReport, rules: DecisionConfig) -> Criterion:
    treatment, control = report.treatment.non_finite, report.control.non_finite
    value = treatment + control
    passed = value <= rules.max_non_finite_clips
    return Criterion(name="finite_audio", value=value, threshold=rules.max_non_finite_clips, comparison="<=",
                     passed=passed,
                     detail=f"{treatment} treatment and {control} control clips with NaN/Inf generation"
                            + ("" if passed else "; such clips count as not authentic, so the comparison is "
                               "suspect (try evaluation.precision fp32 or a lower guidance scale)"))


def val_loss(report: EvalReport, rules: DecisionConfig) -> Criterion:
    value, threshold = report.val_loss, rules.max_val_loss
    passed = value is not None and value <= threshold
    detail = ("not measured: the dataset has no validation split" if value is None else
              f"validation loss {value:.4g} {'<=' if passed else '>'} {threshold:g}")
    return Criterion(name="val_loss", value=value, threshold=threshold, comparison="<=", passed=passed,
                     detail=detail)


def val_loss_improvement(report: EvalReport, margin: float) -> Criterion:
    current, baseline = report.val_loss, report.baseline_val_loss
    if current is None or baseline is None:
        missing = "the checkpoint's validation loss" if current is None else \
            "the untouched model's validation loss (the checkpoints carry no baseline)"
        return Criterion(name="val_loss_improvement", value=None, threshold=margin, comparison=">=", passed=False,
                         detail=f"not measured: {missing}; set decision.min_val_loss_improvement: null to decide "
                                "without it")
    improvement = baseline - current
    passed = improvement >= margin
    return Criterion(name="val_loss_improvement", value=improvement, threshold=margin, comparison=">=",
                     passed=passed,
                     detail=f"validation loss {current:.4g} against {baseline:.4g} before training: "
                            f"{improvement:+.4g} {'>=' if passed else '<'} the {margin:g} margin")


def cost(spend_usd: float | None, limit_usd: float) -> Criterion:
    passed = spend_usd is not None and spend_usd <= limit_usd
    detail = ("spend not known: no cost ledger" if spend_usd is None else
              f"spend ${spend_usd:.2f} {'within' if passed else 'over'} the ${limit_usd:.2f} limit")
    return Criterion(name="cost", value=spend_usd, threshold=limit_usd, comparison="<=", passed=passed,
                     detail=detail)


def evaluation_criteria(report: EvalReport, rules: DecisionConfig) -> list[Criterion]:
    """Every criterion the evaluation report alone decides (all but cost), in the order shown."""
    group, prompt_set = selected_group(report, rules.prompt_set), rules.prompt_set
    missing = missing_set(report, prompt_set) if group is None else ""
    criteria = [authenticity(group, rules, prompt_set, missing), beats_control(group, rules, prompt_set, missing),
                finite_audio(report, rules), val_loss(report, rules)]
    if rules.min_val_loss_improvement is not None:
        criteria.append(val_loss_improvement(report, rules.min_val_loss_improvement))
    return criteria


def decide(report: EvalReport, spend_usd: float | None, config: RunConfig, now: datetime, *,
           re_decision: bool = False) -> Decision:
    """GO when every criterion passes (see the module docstring); `re_decision` marks an offline audit."""
    rules = config.decision
    criteria = evaluation_criteria(report, rules)
    criteria.insert(3, cost(spend_usd, config.max_cost_usd))
    # Without the counted set the decision keeps the whole report's arms (`describe` says so).
    group = selected_group(report, rules.prompt_set) or selected_group(report, "all")
    assert group is not None  # "all" is always in the report
    return Decision(run_id=report.run_id, point=report.point, epoch=report.epoch,
                    outcome="GO" if all(c.passed for c in criteria) else "NO-GO", criteria=criteria,
                    prompt_set=rules.prompt_set, treatment=group.treatment, control=group.control,
                    comparison=group.comparison, prompt_sets=report.prompt_sets, flags=report.flags,
                    provenance=report.provenance, spend_usd=spend_usd or 0.0, re_decision=re_decision,
                    decided_at=now)


def criterion_line(c: Criterion) -> str:
    """`[pass] authenticity: 44.0% (95% bound 35.6%-100.0%, p = 0.039 vs 0.05) needs >= 0.35: <detail>`."""
    shown = "not measured" if c.value is None else _value(c.name, c.value)
    evidence = []
    if c.interval is not None and c.confidence is not None:
        evidence.append(f"{c.confidence:.0%} interval {_value(c.name, c.interval[0])} to "
                        f"{_value(c.name, c.interval[1])}")
    if c.p_value is not None:
        evidence.append(f"p = {c.p_value:.3g}" + (f" vs alpha {c.alpha:g}" if c.alpha is not None else ""))
    extra = f" ({'; '.join(evidence)})" if evidence else ""
    return (f"[{'pass' if c.passed else 'FAIL'}] {c.name}: {shown}{extra}, needs {c.comparison} "
            f"{_value(c.name, c.threshold)}. {c.detail}")


def _value(name: str, value: float) -> str:
    if name in ("authenticity", "beats_control"):
        return f"{value:+.1%}" if name == "beats_control" else f"{value:.1%}"
    if name == "cost":
        return f"${value:.2f}"
    if name == "finite_audio":
        return f"{value:g} clips"
    return f"{value:.4g}"


def prompt_set_counts(s: GroupSummary) -> str:
    """`treatment 40/100 = 40.0%, control 10/100 = 10.0%, McNemar p = 1.2e-06`."""
    return (f"treatment {s.treatment.authentic}/{s.treatment.clips} = {s.treatment.rate:.1%}, control "
            f"{s.control.authentic}/{s.control.clips} = {s.control.rate:.1%}, McNemar p = "
            f"{s.comparison.p_value:.3g}")


def set_in_report(decision: Decision) -> bool:
    """Whether the report had the prompt set the decision counted (else its arms are the whole report's)."""
    return decision.prompt_set == "all" or any(s.prompt_set == decision.prompt_set for s in decision.prompt_sets)


def describe(decision: Decision) -> str:
    """The human message for SNS (and `aurax decide`)."""
    heading = (f"RE-DECISION (offline audit, not the run's announced decision) for run {decision.run_id}: "
               if decision.re_decision else f"Run {decision.run_id}: ")
    lines = [f"{heading}{decision.outcome} at the {decision.point} point (epoch {decision.epoch}).", ""]
    lines += [f"  {criterion_line(c)}" for c in decision.criteria]
    t, k = decision.treatment, decision.control
    counts = (f"Treatment {t.authentic}/{t.clips} = {t.rate:.1%} authentic (Wilson 95% {t.wilson_low:.1%}-"
              f"{t.wilson_high:.1%}); control {k.authentic}/{k.clips} = {k.rate:.1%} ({k.wilson_low:.1%}-"
              f"{k.wilson_high:.1%}).")
    # Without the counted set, `decide` keeps the whole report's counts: say so rather than label them the set's.
    lines += ["", f"Clips counted: prompt set '{decision.prompt_set}'. {counts}" if set_in_report(decision) else
              f"Clips counted: prompt set '{decision.prompt_set}': none in the report. All clips: {counts}"]
    lines += [f"  prompt set {s.prompt_set}: {prompt_set_counts(s)}" for s in decision.prompt_sets]
    if decision.flags:
        lines += ["", "Evaluation flags:"] + [f"  - {flag}" for flag in decision.flags]
    cost_criterion = next((c for c in decision.criteria if c.name == "cost"), None)
    spend = "not known" if cost_criterion is not None and cost_criterion.value is None else \
        f"${decision.spend_usd:.2f}"
    lines += ["",
              f"Spend so far {spend}.",
              f"Checkpoint {decision.provenance.checkpoint_uri} (manifest sha256 "
              f"{decision.provenance.checkpoint_sha256[:12]}), code {decision.provenance.code_version}."]
    return "\n".join(lines) + "\n"
