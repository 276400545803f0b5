"""The go/no-go rule: GO only when every criterion passes; a value that could not be measured fails."""

from __future__ import annotations

from datetime import datetime

from aurax_contracts import Criterion, Decision, EvalReport, RunConfig


def criterion(name: str, value: float | None, threshold: float, comparison: str) -> Criterion:
    passed = value is not None and (value >= threshold if comparison == ">=" else value <= threshold)
    return Criterion(name=name, value=value, threshold=threshold, comparison=comparison, passed=passed)


def decide(report: EvalReport, spend_usd: float | None, config: RunConfig, now: datetime) -> Decision:
    """Authenticity rate >= min_authenticity AND spend <= max cost AND val loss <= max_val_loss."""
    criteria = [
        criterion("authenticity", report.treatment.rate, config.decision.min_authenticity, ">="),
        criterion("cost", spend_usd, config.max_cost_usd, "<="),
        criterion("val_loss", report.val_loss, config.decision.max_val_loss, "<="),
    ]
    return Decision(run_id=report.run_id, point=report.point, epoch=report.epoch,
                    outcome="GO" if all(c.passed for c in criteria) else "NO-GO", criteria=criteria,
                    treatment=report.treatment, control=report.control, comparison=report.comparison,
                    provenance=report.provenance, spend_usd=spend_usd or 0.0, decided_at=now)


def describe(decision: Decision) -> str:
    """The human message for SNS."""
    lines = [f"Run {decision.run_id}: {decision.outcome} at the {decision.point} point (epoch {decision.epoch}).",
             ""]
    for c in decision.criteria:
        shown = "not measured" if c.value is None else f"{c.value:.4g}"
        lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {shown} (needs {c.comparison} {c.threshold:g})")
    t, k = decision.treatment, decision.control
    lines += ["",
              f"Treatment authenticity {t.authentic}/{t.clips} = {t.rate:.1%} (95% CI {t.wilson_low:.1%}-"
              f"{t.wilson_high:.1%}); control {k.authentic}/{k.clips} = {k.rate:.1%}.",
              f"Difference {decision.comparison.difference:+.1%}, "
              f"one-sided Fisher p = {decision.comparison.p_value:.3g}.",
              f"Spend so far ${decision.spend_usd:.2f}.",
              f"Checkpoint {decision.provenance.checkpoint_uri} (manifest sha256 "
              f"{decision.provenance.checkpoint_sha256[:12]}), code {decision.provenance.code_version}."]
    return "\n".join(lines) + "\n"
