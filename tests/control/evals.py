"""Crafted evaluation reports and decisions."""

from __future__ import annotations

from aurax_contracts import ArmSummary, Comparison, Decision, EvalReport, Provenance
from aurax_contracts.evaluation import PromptSetSummary
from aurax_control.stats import mcnemar_exact_greater, paired_difference_lower, wilson_interval

from .records import T0

SHA = "a" * 64


def arm(model: str, authentic: int, clips: int = 100, non_finite: int = 0) -> ArmSummary:
    rate = authentic / clips
    low, high = wilson_interval(authentic, clips)
    return ArmSummary(model=model, clips=clips, authentic=authentic, rate=rate, wilson_low=low, wilson_high=high,
                      mean_score=60.0, non_finite=non_finite)


def comparison(treatment_only: int, control_only: int, pairs: int, both: int = 0) -> Comparison:
    return Comparison(pairs=pairs, both=both, treatment_only=treatment_only, control_only=control_only,
                      difference=(treatment_only - control_only) / pairs,
                      difference_low=paired_difference_lower(treatment_only, control_only, pairs),
                      p_value=mcnemar_exact_greater(treatment_only, control_only))


def eval_report(run_id: str = "run-a", point: str = "decision", authentic: float = 40, control: float = 10,
                clips: int = 300, val_loss: float | None = 3.0, baseline_val_loss: float | None = 3.6,
                checkpoint_sha: str = SHA, non_finite: int = 0) -> EvalReport:
    """`authentic` and `control` are the arms' authentic shares in percent of `clips`; no pair has both clips
    authentic, so the discordant pairs are the arms' authentic counts. Every clip is of the Amapiano prompt set
    (the one the decision counts by default)."""
    t, c = round(authentic * clips / 100), round(control * clips / 100)
    treatment, untouched = arm("s3://b/ck", t, clips, non_finite), arm("facebook/musicgen-small", c, clips)
    paired = comparison(t, c, clips)
    return EvalReport(run_id=run_id, point=point, epoch=5, step=500, score_threshold=80, clip_seconds=10,
                      guidance_scale=3, treatment=treatment, control=untouched, comparison=paired,
                      prompt_sets=[PromptSetSummary(prompt_set="amapiano", prompts=["amapiano groove"],
                                                    treatment=treatment, control=untouched, comparison=paired)],
                      val_loss=val_loss, baseline_val_loss=baseline_val_loss,
                      provenance=Provenance(checkpoint_uri="s3://b/ck", checkpoint_sha256=checkpoint_sha,
                                            code_version="git-abc", dataset_manifest_sha256="b" * 64),
                      clips=[], created_at=T0)


def decision_for(report: EvalReport, outcome: str = "GO") -> Decision:
    from aurax_contracts import RunConfig
    from aurax_control.decision import decide

    made = decide(report, 10.0, RunConfig(run_id=report.run_id), T0)
    assert made.outcome == outcome
    return made
