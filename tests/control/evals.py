"""Crafted evaluation reports and decisions."""

from __future__ import annotations

from aurax_contracts import ArmSummary, Comparison, Decision, EvalReport, Provenance

from .records import T0

SHA = "a" * 64


def arm(model: str, authentic: int, clips: int = 100) -> ArmSummary:
    rate = authentic / clips
    return ArmSummary(model=model, clips=clips, authentic=authentic, rate=rate, wilson_low=max(0.0, rate - 0.09),
                      wilson_high=min(1.0, rate + 0.09), mean_score=60.0)


def eval_report(run_id: str = "run-a", point: str = "decision", authentic: int = 40,
                val_loss: float | None = 3.0, checkpoint_sha: str = SHA) -> EvalReport:
    return EvalReport(run_id=run_id, point=point, epoch=5, step=500, score_threshold=80, clip_seconds=10,
                      guidance_scale=3, treatment=arm("s3://b/ck", authentic),
                      control=arm("facebook/musicgen-small", 10),
                      comparison=Comparison(difference=(authentic - 10) / 100, p_value=0.001), val_loss=val_loss,
                      provenance=Provenance(checkpoint_uri="s3://b/ck", checkpoint_sha256=checkpoint_sha,
                                            code_version="git-abc", dataset_manifest_sha256="b" * 64),
                      clips=[], created_at=T0)


def decision_for(report: EvalReport, outcome: str = "GO") -> Decision:
    from aurax_contracts import RunConfig
    from aurax_control.decision import decide

    made = decide(report, 10.0, RunConfig(run_id=report.run_id), T0)
    assert made.outcome == outcome
    return made
