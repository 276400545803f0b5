"""From scored clips to the report's summaries: per arm, paired comparison, per prompt set and per prompt.

The statistics are `aurax_control.stats` (pure Python), the same code the Decide function runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from aurax_contracts import ArmSummary, ClipScore, Comparison
from aurax_contracts.evaluation import GroupSummary, PromptSetSummary, PromptSummary
from aurax_control.stats import mcnemar_exact_greater, paired_difference_lower, wilson_interval


def summarise_arm(model: str, clips: Sequence[ClipScore]) -> ArmSummary:
    authentic = sum(c.authentic for c in clips)
    low, high = wilson_interval(authentic, len(clips))
    return ArmSummary(model=model, clips=len(clips), authentic=authentic,
                      rate=authentic / len(clips) if clips else 0.0, wilson_low=low, wilson_high=high,
                      mean_score=sum(c.score for c in clips) / len(clips) if clips else 0.0,
                      non_finite=sum(not c.finite for c in clips))


def compare_pairs(treatment: Sequence[ClipScore], control: Sequence[ClipScore]) -> Comparison:
    """Pairs clip i of treatment with clip i of control (same prompt and seed). Raises `ValueError` when the
    arms hold different clip indices: an unpaired clip cannot be compared."""
    by_index = {c.index: c for c in control}
    if sorted(by_index) != sorted(c.index for c in treatment):
        raise ValueError("treatment and control hold different clip indices; every clip needs its pair")
    outcomes = [(t.authentic, by_index[t.index].authentic) for t in treatment]
    both = sum(t and c for t, c in outcomes)
    treatment_only = sum(t and not c for t, c in outcomes)
    control_only = sum(c and not t for t, c in outcomes)
    pairs = len(outcomes)
    return Comparison(pairs=pairs, both=both, treatment_only=treatment_only, control_only=control_only,
                      difference=(treatment_only - control_only) / pairs if pairs else 0.0,
                      difference_low=paired_difference_lower(treatment_only, control_only, pairs),
                      p_value=mcnemar_exact_greater(treatment_only, control_only))


def summarise_group(treatment_model: str, control_model: str, clips: Sequence[ClipScore]) -> GroupSummary:
    treatment = [c for c in clips if c.arm == "treatment"]
    control = [c for c in clips if c.arm == "control"]
    return GroupSummary(treatment=summarise_arm(treatment_model, treatment),
                        control=summarise_arm(control_model, control), comparison=compare_pairs(treatment, control))


def by_prompt_set(treatment_model: str, control_model: str, clips: Sequence[ClipScore]) -> list[PromptSetSummary]:
    out = []
    for prompt_set in ("amapiano", "in-distribution"):
        members = [c for c in clips if c.prompt_set == prompt_set]
        if members:
            group = summarise_group(treatment_model, control_model, members)
            prompts = list(dict.fromkeys(c.prompt for c in members))
            out.append(PromptSetSummary(prompt_set=prompt_set, prompts=prompts, **dict(group)))
    return out


def by_prompt(treatment_model: str, control_model: str, clips: Sequence[ClipScore]) -> list[PromptSummary]:
    out = []
    for prompt, prompt_set in dict.fromkeys((c.prompt, c.prompt_set) for c in clips):
        group = summarise_group(treatment_model, control_model, [c for c in clips if c.prompt == prompt])
        out.append(PromptSummary(prompt=prompt, prompt_set=prompt_set, **dict(group)))
    return out
