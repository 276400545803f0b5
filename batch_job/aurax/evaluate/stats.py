"""Authenticity rates with Wilson intervals, and the one-sided Fisher exact test between the arms."""

from __future__ import annotations

from scipy.stats import binomtest, fisher_exact

CONFIDENCE = 0.95


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0 and n, unlike the normal one).

    No trials: the whole [0, 1]."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    rate = successes / trials
    # Clamp rounding so the interval always contains the rate (EvalReport validates that it does).
    return max(0.0, min(float(interval.low), rate)), min(1.0, max(float(interval.high), rate))


def fisher_greater(treatment_successes: int, treatment_trials: int, control_successes: int,
                   control_trials: int) -> float:
    """p-value of Fisher's exact test that treatment's success rate is greater than control's."""
    table = [[treatment_successes, treatment_trials - treatment_successes],
             [control_successes, control_trials - control_successes]]
    return float(min(1.0, max(0.0, fisher_exact(table, alternative="greater").pvalue)))
