"""The pure-Python exact statistics against scipy and published values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom, binomtest

from aurax_control.stats import (
    binomial_sf,
    binomial_test_greater,
    clopper_pearson_lower,
    mcnemar_exact_greater,
    paired_difference_lower,
    wilson_interval,
)


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.3), (3, 10, 0.3), (10, 10, 0.3), (44, 100, 0.35),
                                           (120, 300, 0.35), (3600, 10_000, 0.35), (1, 1, 0.5), (5, 4, 0.5),
                                           (2, 9, 0.0), (2, 9, 1.0)])
def test_binomial_tail_matches_scipy(k: int, n: int, p: float) -> None:
    assert binomial_sf(k, n, p) == pytest.approx(binom.sf(k - 1, n, p), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (35, 100), (44, 100), (82, 200),
                                      (120, 300), (1, 1)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_lower_bound_matches_scipy(k: int, n: int, confidence: float) -> None:
    expected = binomtest(k, n, alternative="greater").proportion_ci(confidence, method="exact").low
    assert clopper_pearson_lower(k, n, confidence) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(44, 100), (43, 100), (82, 200), (120, 300), (0, 5)])
def test_exact_binomial_test_matches_scipy(k: int, n: int) -> None:
    assert binomial_test_greater(k, n, 0.35) == pytest.approx(
        binomtest(k, n, 0.35, alternative="greater").pvalue, rel=1e-10)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (10, 0), (0, 10), (12, 5), (5, 12), (60, 40), (900, 850)])
def test_mcnemar_exact_is_a_binomial_test_on_the_discordant_pairs(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_exact_greater(b, c) == pytest.approx(expected, rel=1e-12)


def test_paired_difference_bound_is_agresti_min() -> None:
    # By hand: b = 30, c = 10, n = 100 -> b* 30.5, c* 10.5, n* 102; d = 20/102; var = (41 - 400/102) / 102^2.
    d, var = 20 / 102, (41 - 400 / 102) / 102 ** 2
    assert paired_difference_lower(30, 10, 100) == pytest.approx(d - 1.6448536269514722 * math.sqrt(var))
    assert paired_difference_lower(0, 0, 10) < 0 < paired_difference_lower(50, 0, 60)
    with pytest.raises(ValueError):
        paired_difference_lower(6, 6, 10)


@pytest.mark.parametrize(("successes", "trials", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no continuity correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
])
def test_wilson_known_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("trials", [1, 7, 40, 100])
def test_wilson_matches_scipy_and_contains_the_rate(trials: int) -> None:
    for successes in range(trials + 1):
        expected = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
        low, high = wilson_interval(successes, trials)
        assert (low, high) == pytest.approx((max(0.0, expected.low), min(1.0, expected.high)), abs=1e-9)
        assert low <= successes / trials <= high
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bad_counts_are_refused() -> None:
    for call in (lambda: clopper_pearson_lower(5, 4), lambda: binomial_test_greater(-1, 4, 0.3),
                 lambda: mcnemar_exact_greater(-1, 2), lambda: binomial_sf(1, 2, 1.5)):
        with pytest.raises(ValueError):
            call()
