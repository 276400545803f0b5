"""Exact binomial statistics for the go/no-go rule, in pure Python (the Lambda runtime has no numpy or scipy).

Every function takes counts and returns floats; the job side cross-checks them against scipy in its tests.

- `binomial_sf`: the upper tail P(X >= k) of X ~ Binomial(n, p), summed term by term in log space.
- `clopper_pearson_lower`: the one-sided exact lower confidence bound of a binomial proportion
  (Clopper & Pearson 1934, Biometrika 26(4):404-413): the p at which P(X >= k | p) equals 1 - confidence.
  It clears a threshold p0 > 0 exactly when the exact one-sided binomial test of H0: p <= p0 rejects at
  alpha = 1 - confidence, since P(X >= k | p) increases with p.
- `mcnemar_exact_greater`: McNemar's exact (conditional) test on paired binary outcomes (McNemar 1947,
  Psychometrika 12(2):153-157; exact form as in Fagerland, Lydersen & Laake 2013, BMC Medical Research
  Methodology 13:91, eq. 2, one-sided): with b pairs where only treatment succeeds and c where only control
  does, b ~ Binomial(b + c, 1/2) under H0, and p = P(X >= b).
- `paired_difference_lower`: a lower confidence bound of the paired difference of proportions, the
  Agresti-Min adjusted Wald bound (Agresti & Min 2005, Statistics in Medicine 24(5):729-740: add 1/2 to each
  of the four cells).
- `wilson_interval`: the Wilson score interval (Wilson 1927, JASA 22(158):209-212).
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: A tail term this small relative to the sum so far changes no bit of a double: the sum stops there.
_NEGLIGIBLE = 1e-18
#: Bisection steps of the Clopper-Pearson bound: 2**-64 of [0, 1] is below a float's resolution near 0.35.
_BISECTION_STEPS = 64


def _check_counts(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials, got {k} of {n}")


def binomial_log_pmf(i: int, n: int, log_p: float, log_q: float) -> float:
    """log P(X = i) for X ~ Binomial(n, p), given log p and log(1 - p) (computed once by the caller)."""
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p); 1 for k <= 0 and 0 for k > n.

    Each term C(n, i) p^i (1 - p)^(n - i) is formed as exp(log C(n, i) + i log p + (n - i) log(1 - p)) with
    `math.lgamma`, so n of many thousands neither overflows nor underflows; the terms are added with
    `math.fsum`, stopping past the mode once a term is below 1e-18 of the sum. Relative error about 1e-12 for
    n up to 10,000 (see tests/control/test_stats.py).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    mode = math.floor((n + 1) * p)
    terms: list[float] = []
    running = 0.0
    for i in range(k, n + 1):
        term = math.exp(binomial_log_pmf(i, n, log_p, log_q))
        terms.append(term)
        running += term
        # Past the mode the terms only shrink (geometrically): stop once they no longer change the sum.
        if i > mode and term < _NEGLIGIBLE * running:
            break
    return min(1.0, math.fsum(terms))


def binomial_test_greater(k: int, n: int, p0: float) -> float:
    """Exact one-sided binomial test of H0: rate <= p0 against H1: rate > p0 (p-value P(X >= k | p0))."""
    _check_counts(k, n)
    return binomial_sf(k, n, p0)


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact lower confidence bound of the rate k / n (0 when k = 0): the least p with
    P(X >= k | p) >= 1 - confidence, found by bisection (the tail grows monotonically with p)."""
    _check_counts(k, n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if k == 0:
        return 0.0
    alpha = 1.0 - confidence
    if k == n:  # closed form: P(X >= n | p) = p^n
        return alpha ** (1.0 / n)
    low, high = 0.0, k / n
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if binomial_sf(k, n, middle) < alpha:
            low = middle
        else:
            high = middle
    return high


def mcnemar_exact_greater(treatment_only: int, control_only: int) -> float:
    """One-sided exact McNemar p-value that treatment succeeds more often than control on paired trials.

    `treatment_only` (b) and `control_only` (c) are the discordant pairs. Under H0 each discordant pair is
    equally likely either way, so p = P(X >= b), X ~ Binomial(b + c, 1/2) = sum_{i >= b} C(b + c, i) / 2^(b+c),
    computed with exact integers (Python's int / int division rounds correctly). No discordant pairs: 1.
    """
    if treatment_only < 0 or control_only < 0:
        raise ValueError(f"discordant pair counts must be >= 0, got {treatment_only} and {control_only}")
    n = treatment_only + control_only
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(treatment_only, n + 1)) / 2 ** n


def paired_difference_lower(treatment_only: int, control_only: int, pairs: int,
                            confidence: float = 0.95) -> float:
    """One-sided lower confidence bound of rate(treatment) - rate(control) over `pairs` matched pairs.

    Agresti-Min adjusted Wald: with b* = b + 1/2, c* = c + 1/2, n* = n + 2, the difference is (b* - c*) / n*
    with variance ((b* + c*) - (b* - c*)^2 / n*) / n*^2; the bound is clipped to [-1, 1].
    """
    if pairs < treatment_only + control_only or min(treatment_only, control_only) < 0:
        raise ValueError(f"need 0 <= discordant pairs ({treatment_only} + {control_only}) <= pairs ({pairs})")
    b, c, n = treatment_only + 0.5, control_only + 0.5, pairs + 2.0
    difference = (b - c) / n
    variance = ((b + c) - (b - c) ** 2 / n) / n ** 2
    z = NormalDist().inv_cdf(confidence)
    return max(-1.0, min(1.0, difference - z * math.sqrt(variance)))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion (well-behaved at 0 and n, unlike the normal
    one): centre (p + z^2/2n) / (1 + z^2/n), half-width z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2).

    No trials: the whole [0, 1]. The interval always contains the rate (rounding is clamped)."""
    _check_counts(successes, trials)
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / trials
    scale = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / scale
    half = z / scale * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return max(0.0, min(centre - half, rate)), min(1.0, max(centre + half, rate))
