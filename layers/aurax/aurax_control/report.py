"""The abort report: why the run stopped, its metrics, its spend, the evaluation, and what to try next.

Built once as sections, rendered to Markdown and to self-contained HTML (pure Python, no plotting)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime

from aurax_contracts import AbortReason, CostLedger, Decision, EvalReport, RunState

from .decision import criterion_line, prompt_set_counts, set_in_report

SIGNIFICANCE = 0.05


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: list[tuple[str, str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


def _num(value: float | None, fmt: str = ".4g") -> str:
    if value is None:
        return "n/a"
    return format(value, fmt) if math.isfinite(value) else str(value)


def suggestions(reason: AbortReason, state: RunState | None, ledger: CostLedger | None,
                report: EvalReport | None, decision: Decision | None) -> list[str]:
    """What the evidence suggests trying next (rules of thumb, each tied to a measured value)."""
    out: list[str] = []
    if reason == AbortReason.DIVERGED:
        out += ["Resume from the last good checkpoint with training.learning_rate lowered 2-5x.",
                "On a T4 (fp16) a collapsing loss scale precedes NaN: try model.precision fp32 for the first "
                "epoch or a lower training.grad_clip_norm."]
    elif reason == AbortReason.OVER_BUDGET:
        if ledger and ledger.usd_per_step and state and state.total_steps:
            out.append(f"Measured ${ledger.usd_per_step:.4f} per step: the full run of {state.total_steps} steps "
                       f"needs about ${ledger.usd_per_step * state.total_steps:.2f}; raise budget.budget_usd or "
                       "cut training.total_epochs to fit.")
        out += ["Switch model.finetune to lora to cut the cost per step.",
                "Check the ledger's attempts for many interrupted attempts: another instance type or zone may "
                "be reclaimed less often."]
    elif reason == AbortReason.IDLE:
        out += ["The job stopped reporting: read its log around the last step and check the data loader "
                "and S3 access; resume from the last checkpoint once fixed."]
    elif reason == AbortReason.NO_GO and decision is not None:
        out += _no_go_advice(decision)
    elif reason in (AbortReason.BAD_CONFIG, AbortReason.BAD_INPUT, AbortReason.PREFLIGHT_FAILED):
        out.append("Nothing was trained: fix the problem named above and start a new execution.")
    elif reason == AbortReason.TIMED_OUT:
        out.append("A job ran past its job definition's timeout: read its log for what it was doing; raise the "
                   "stack parameter TrainTimeoutSeconds if training was simply long.")
    elif reason == AbortReason.RETRIES_EXHAUSTED:
        out.append("Spot capacity kept being reclaimed: start the run again (it resumes from its last "
                   "checkpoint) or add spot instance types to the stack parameter GpuInstanceTypes.")
    elif reason == AbortReason.INFRASTRUCTURE:
        out.append("The instances failed to pull, start or inspect the job's container after every "
                   "resubmission: check the image URI and ECR (throttling, the instance role's pull rights), the "
                   "compute environment's instances and the ECS agent log, then start the run again (it resumes "
                   "from its last checkpoint).")
    else:
        out.append("Read the failed job's log; the run resumes from its last checkpoint when started again.")
    if state and state.bad_lines:
        out.append(f"{state.bad_lines} metric lines could not be read: check the job's metric writer.")
    return out


def _no_go_advice(decision: Decision) -> list[str]:
    """Advice per failed criterion; the per-prompt-set rates tell "did not learn" from "prompts it never saw"."""
    out = []
    sets = {s.prompt_set: s for s in decision.prompt_sets}
    tags, prose = sets.get("in-distribution"), sets.get("amapiano")
    for c in decision.failed:
        if c.name in ("authenticity", "beats_control") and c.value is None:
            # The counted prompt set is not in the report: nothing about the model follows, only how to re-decide.
            if c.detail not in out:
                out.append(c.detail)
        elif c.name == "authenticity":
            significant = decision.comparison.p_value < SIGNIFICANCE
            out.append(f"Authenticity {_num(c.value, '.1%')} does not clear {c.threshold:.0%} with confidence "
                       f"({c.detail})" + ("; the gain over the base model is significant, so more epochs on the "
                                          "same data may reach it." if significant else
                                          "; weight the strongest proxy tags higher (dataset.include_tags) or raise "
                                          "dataset.min_score for a cleaner set."))
            if tags is not None and prose is not None:
                if tags.comparison.p_value < SIGNIFICANCE <= prose.comparison.p_value:
                    out.append(f"The model gained on the tag-style prompts (treatment {tags.treatment.rate:.1%} vs "
                               f"control {tags.control.rate:.1%}, McNemar p = {tags.comparison.p_value:.3g}) but "
                               f"not on the Amapiano prose prompts ({prose.treatment.rate:.1%} vs "
                               f"{prose.control.rate:.1%}): it learnt, but the prose prompts are outside the "
                               "captions it was trained on; prompt it with tags or caption the data in prose.")
                elif tags.comparison.p_value >= SIGNIFICANCE:
                    out.append(f"No gain even on the tag-style prompts it was trained with (treatment "
                               f"{tags.treatment.rate:.1%} vs control {tags.control.rate:.1%}, McNemar p = "
                               f"{tags.comparison.p_value:.3g}): the model did not learn the target from this data.")
        elif c.name == "beats_control":
            out.append(f"Treatment does not beat the base model on the paired clips ({c.detail}): more epochs, a "
                       "higher learning rate or a cleaner tag selection; a larger evaluation "
                       "(evaluation.clips_per_model, see `aurax estimate`) if the gain is there but small.")
        elif c.name == "finite_audio":
            out.append(f"Generation produced NaN/Inf ({c.detail}): re-run the evaluation with evaluation.precision "
                       "fp32 or a lower evaluation.guidance_scale, then `aurax decide` on the new report.")
        elif c.name == "val_loss":
            out.append("Validation loss " + ("was not measured: check the dataset's validation split."
                                             if c.value is None else
                                             f"{_num(c.value)} is above {c.threshold:g}: train longer or "
                                             "raise the learning rate if training loss is still falling."))
        elif c.name == "val_loss_improvement":
            out.append(f"Validation loss did not improve enough on the untouched model's ({c.detail}).")
        elif c.name == "cost":
            out.append(f"Spend {_num(c.value, '.2f')} is above the cost limit {c.threshold:.2f}: the model "
                       "is not worth its cost at this rate; see the ledger.")
    return out


def build_sections(run_id: str, reason: AbortReason, detail: str, state: RunState | None,
                   ledger: CostLedger | None, report: EvalReport | None, decision: Decision | None,
                   now: datetime) -> list[Section]:
    sections = [Section("Why", paragraphs=[f"Run {run_id} was stopped: {reason.value}.", detail or "(no detail)"],
                        table=[("Reason", reason.value), ("Written", now.isoformat())])]
    if state is not None:
        sections.append(Section("Metrics", table=[
            ("Status", state.status), ("Epoch in progress (0-based)", str(state.epoch)), ("Step", str(state.step)),
            ("Total steps", str(state.total_steps) if state.total_steps is not None else "n/a"),
            ("Last training loss", _num(state.last_loss)), ("Last validation loss", _num(state.last_val_loss)),
            ("Interruptions", str(state.interruptions)), ("Bad metric lines", str(state.bad_lines)),
            ("Last heartbeat", state.last_heartbeat_at.isoformat() if state.last_heartbeat_at else "n/a")]))
    if ledger is not None:
        spend = Section("Spend", table=[
            ("Spend", f"${ledger.spend_usd:.2f} of ${ledger.budget_usd:.2f}"),
            ("Compute", f"${ledger.compute_usd:.2f}"),
            ("Storage and requests (estimate)", f"${ledger.storage_usd:.2f}"),
            ("Projected", f"${ledger.projected_usd:.2f}" if ledger.projected_usd is not None else "n/a"),
            ("Per step", f"${ledger.usd_per_step:.5f}" if ledger.usd_per_step is not None else "n/a"),
            ("Attempts", str(len(ledger.attempts)))])
        spend.bullets = [f"{a.job_name or a.job_id} attempt {a.attempt}: {a.instance_type or 'unknown instance'} "
                         f"in {a.availability_zone or 'unknown zone'}, "
                         f"${a.cost_usd:.2f} at ${a.usd_per_hour:.3f}/h ({a.price_source})" for a in ledger.attempts]
        sections.append(spend)
    if decision is not None:
        clips = f"{decision.treatment.clips} clips per arm" if set_in_report(decision) else "none in the report"
        counted = f"counting prompt set '{decision.prompt_set}' ({clips})"
        sections.append(Section("Decision", paragraphs=[f"{decision.outcome} at the {decision.point} point, "
                                                        f"{counted}."],
                                bullets=[criterion_line(c) for c in decision.criteria] + decision.flags))
    if report is not None:
        t, k = report.treatment, report.control
        sections.append(Section("Evaluation", table=[
            ("Point / epoch", f"{report.point} / {report.epoch}"),
            ("Treatment authenticity (all clips)",
             f"{t.authentic}/{t.clips} = {t.rate:.1%} (95% CI {t.wilson_low:.1%}-{t.wilson_high:.1%})"),
            ("Control authenticity (all clips)", f"{k.authentic}/{k.clips} = {k.rate:.1%}"),
            ("Paired difference, p (McNemar exact, one-sided; all clips)",
             f"{report.comparison.difference:+.1%} ({report.comparison.treatment_only} pairs only treatment, "
             f"{report.comparison.control_only} only control), p = {report.comparison.p_value:.3g}"),
            *((f"Prompt set {s.prompt_set}", prompt_set_counts(s)) for s in report.prompt_sets),
            ("Mean score treatment / control", f"{t.mean_score:.1f} / {k.mean_score:.1f}"),
            ("Validation loss (untouched model)", f"{_num(report.val_loss)} ({_num(report.baseline_val_loss)})"),
            ("Checkpoint", report.provenance.checkpoint_uri)]))
    next_steps = suggestions(reason, state, ledger, report, decision)
    sections.append(Section("What the data suggests next", bullets=next_steps))
    return sections


def to_markdown(run_id: str, sections: list[Section]) -> str:
    out = [f"# AURA-X abort report: {run_id}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [p + "\n" for p in s.paragraphs]
        if s.table:
            out += ["| | |", "|---|---|"] + [f"| {k} | {v.replace('|', '/')} |" for k, v in s.table] + [""]
        if s.bullets:
            out += [f"- {b}" for b in s.bullets] + [""]
    return "\n".join(out)


def to_html(run_id: str, sections: list[Section]) -> str:
    e = html.escape
    body = [f"<h1>AURA-X abort report: {e(run_id)}</h1>"]
    for s in sections:
        body.append(f"<h2>{e(s.title)}</h2>")
        body += [f"<p>{e(p)}</p>" for p in s.paragraphs]
        if s.table:
            rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in s.table)
            body.append("<table>" + rows + "</table>")
        if s.bullets:
            body.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in s.bullets) + "</ul>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Abort report {e(run_id)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
