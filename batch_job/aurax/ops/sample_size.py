"""How many evaluation clips the decision needs, and what generating them costs (`aurax estimate`).

Power of the two statistical criteria of the go/no-go rule (docs/operations.md, "The decision rule"), exact:
- authenticity: the exact one-sided binomial test of H0: rate <= min_authenticity at 1 - authenticity_confidence
  rejects when at least k* of n clips are authentic; its power at a true rate p is P(X >= k* | n, p).
- beats_control: McNemar's exact test on the pairs. With treatment rate p and control rate c, and the two
  clips of a pair authentic independently, a pair is discordant for treatment with p(1 - c) and for control
  with c(1 - p); the power sums, over the number d of discordant pairs, P(d) times the chance that the
  treatment-won share of them reaches the exact test's critical count (the conditional power of McNemar's
  test, as in Fagerland, Lydersen & Laake 2013, BMC Medical Research Methodology 13:91).
Exact tests' power saw-tooths with n; the clips needed are the least n that reaches the asked power.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache, lru_cache

from aurax_contracts import RunConfig
from aurax_control.stats import binomial_log_pmf, binomial_sf

from . import figures as f

#: The largest evaluation `clips_per_model` allows.
MAX_CLIPS = 10_000


@lru_cache(maxsize=65_536)
def critical_count(n: int, p0: float, alpha: float) -> int:
    """Least k with P(X >= k | n, p0) <= alpha (n + 1 when even k = n is not rare enough), by bisection: the
    tail falls as k grows, and for alpha < 1/2 the answer lies above the mean."""
    if p0 <= 0.0:
        return 1
    low, high = max(0, math.floor(n * p0) - 1), n + 1  # tail(low) > alpha (alpha < 1/2), tail(n + 1) = 0
    if binomial_sf(low, n, p0) <= alpha:
        low = -1
    while high - low > 1:
        middle = (low + high) // 2
        if binomial_sf(middle, n, p0) <= alpha:
            high = middle
        else:
            low = middle
    return high


def authenticity_power(n: int, threshold: float, true_rate: float, alpha: float) -> float:
    """Power of the exact one-sided binomial test against `threshold` at a true authenticity `true_rate`."""
    return binomial_sf(critical_count(n, threshold, alpha), n, true_rate)


def mcnemar_power(n: int, treatment_rate: float, control_rate: float, alpha: float) -> float:
    """Power of the one-sided exact McNemar test on `n` pairs (independent outcomes within a pair)."""
    for_treatment = treatment_rate * (1 - control_rate)
    for_control = control_rate * (1 - treatment_rate)
    discordant = for_treatment + for_control
    if discordant <= 0.0:
        return 0.0
    share = for_treatment / discordant
    if discordant >= 1.0:
        return binomial_sf(critical_count(n, 0.5, alpha), n, share)
    log_d, log_not_d = math.log(discordant), math.log1p(-discordant)
    # Only the discordant counts within 12 standard deviations of their mean weigh anything.
    spread = 12 * math.sqrt(n * discordant * (1 - discordant)) + 12
    first, last = max(1, math.floor(n * discordant - spread)), min(n, math.ceil(n * discordant + spread))
    power = math.fsum(math.exp(binomial_log_pmf(d, n, log_d, log_not_d))
                      * binomial_sf(critical_count(d, 0.5, alpha), d, share) for d in range(first, last + 1))
    return min(1.0, power)


def clips_needed(power_at: Callable[[int], float], target: float, *, stable: bool = False) -> int | None:
    """Least n (1..MAX_CLIPS) with power_at(n) >= target, or None when no evaluation size reaches it. Sizes
    double until one reaches the target, then the bracket below it is walked (exact tests' power saw-tooths,
    so a smaller size below the bracket reaching it is not looked for).

    `stable`: the least n from which every size up to 2n (or MAX_CLIPS) reaches the target too, so that "needs
    n" holds for a size rounded up from n. The exact binomial test's saw-tooth makes the first size reaching
    80% at a true 45% (148 clips against 35%) dip below it again at sizes up to 164 (Chernick & Liu 2002, "The
    saw-toothed behavior of power versus sample size", The American Statistician 56:149)."""
    low, high = 1, 1
    while power_at(high) < target:
        if high >= MAX_CLIPS:
            return None
        low, high = high, min(2 * high, MAX_CLIPS)
    needed = next(n for n in range(low, high + 1) if power_at(n) >= target)
    while stable:
        short = [n for n in range(needed + 1, min(2 * needed, MAX_CLIPS) + 1) if power_at(n) < target]
        if not short:
            break
        following = next((n for n in range(short[-1] + 1, MAX_CLIPS + 1) if power_at(n) >= target), None)
        if following is None:
            return None
        needed = following
    return needed


@dataclass(frozen=True)
class EvaluationPlan:
    """The decision evaluation: how many clips, how sure, how long, how much."""

    clips_per_model: int
    prompt_set: str
    """The prompt set the decision counts (`decision.prompt_set`)."""
    decision_clips: int
    """Clips per arm of that set: the sample the tests see."""
    true_rate: float
    control_rate: float
    target_power: float
    authenticity_power: float
    """Power of the authenticity criterion with the configured clips at `true_rate`."""
    comparison_power: float
    """Power of the beats_control criterion with the configured clips."""
    clips_for_authenticity: int | None
    """Least `clips_per_model` from which `target_power` on authenticity holds (see `clips_needed(stable=True)`;
    None: unreachable within 10,000)."""
    clips_for_comparison: int | None
    hours: float
    """GPU hours of the configured evaluation, job start included."""
    usd: float
    needed_hours: float | None
    """GPU hours of an evaluation with the clips the target power needs."""
    needed_usd: float | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def generation_hours(config: RunConfig, clips_per_model: int | None = None) -> float:
    """Generating both arms on the T4, batched (scoring overlaps it on the job's writer threads)."""
    ev = config.evaluation
    clips = ev.clips_per_model if clips_per_model is None else clips_per_model
    return 2 * clips * ev.clip_seconds * f.T4_GENERATION_SECONDS_PER_AUDIO_SECOND.value / 3600


def evaluation_hours(config: RunConfig, clips_per_model: int | None = None) -> float:
    """The evaluation job's GPU hours: generation, interruptions' overhead and the job's start (as `estimate`
    counts every GPU phase)."""
    return generation_hours(config, clips_per_model) * (1 + f.INTERRUPTION_OVERHEAD.value) + \
        f.JOB_START_SECONDS.value / 3600


def evaluation_plan(config: RunConfig, *, true_rate: float = 0.45, control_rate: float = 0.15,
                    target_power: float = 0.8, gpu_usd_per_hour: float | None = None) -> EvaluationPlan:
    """Power and cost of the configured decision evaluation, and the clips `target_power` needs at a true
    treatment authenticity `true_rate` (control: `control_rate`, the untouched model's 10-20%)."""
    rules, evaluation = config.decision, config.evaluation
    n = evaluation.clips_per_model
    alpha = 1 - rules.authenticity_confidence
    price = gpu_usd_per_hour or f.GPU_SPOT_USD_PER_HOUR.value

    # Powers are functions of clips_per_model: the tests see only the decision's prompt set's share of them.
    @cache
    def counted_authenticity(counted: int) -> float:
        return authenticity_power(counted, rules.min_authenticity, true_rate, alpha)

    def authenticity(clips: int) -> float:
        return counted_authenticity(evaluation.clips_in(rules.prompt_set, clips))

    def comparison(clips: int) -> float:
        return mcnemar_power(evaluation.clips_in(rules.prompt_set, clips), true_rate, control_rate,
                             rules.improvement_alpha)

    # The binomial test's power saw-tooths strongly; McNemar's, averaged over the discordant count, hardly.
    for_authenticity = clips_needed(authenticity, target_power, stable=True)
    for_comparison = clips_needed(comparison, target_power)
    needed = None if for_authenticity is None or for_comparison is None else max(for_authenticity, for_comparison)
    hours = evaluation_hours(config)
    needed_hours = evaluation_hours(config, needed) if needed is not None else None
    return EvaluationPlan(n, rules.prompt_set, evaluation.clips_in(rules.prompt_set), true_rate, control_rate,
                          target_power, authenticity(n), comparison(n),
                          for_authenticity, for_comparison, hours, hours * price, needed_hours,
                          needed_hours * price if needed_hours is not None else None)


def render_plan(plan: EvaluationPlan, config: RunConfig) -> list[str]:
    rules = config.decision

    def needed(clips: int | None) -> str:
        if clips is None:
            return "more than 10,000 clips per arm"
        if plan.prompt_set == "all":
            return f"{clips} clips per arm"
        return f"{clips} clips per arm ({config.evaluation.clips_in(plan.prompt_set, clips)} of '{plan.prompt_set}')"

    lines = [
        f"decision evaluation: {plan.clips_per_model} clips per arm of {config.evaluation.clip_seconds:g} s, "
        f"{plan.hours:.2f} GPU h, ${plan.usd:.2f}; the decision counts the {plan.decision_clips} of prompt set "
        f"'{plan.prompt_set}'",
        f"  power at a true authenticity of {plan.true_rate:.0%} (control {plan.control_rate:.0%}):",
        f"    authenticity (exact test against {rules.min_authenticity:.0%} at "
        f"{1 - rules.authenticity_confidence:g}): {plan.authenticity_power:.2f}; {plan.target_power:.0%} power "
        f"needs {needed(plan.clips_for_authenticity)}",
        f"    beats control (McNemar at {rules.improvement_alpha:g}): {plan.comparison_power:.2f}; "
        f"{plan.target_power:.0%} power needs {needed(plan.clips_for_comparison)}",
    ]
    if plan.needed_hours is not None and plan.needed_usd is not None:
        lines.append(f"  an evaluation sized for {plan.target_power:.0%} power: {plan.needed_hours:.2f} GPU h, "
                     f"${plan.needed_usd:.2f}")
    return lines
